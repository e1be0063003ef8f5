//! Browser tests of the whole client against `test_mock.js`, a scripted
//! upload API and object store standing in for `fetch` and XMLHttpRequest.
//! Run with `wasm-pack test --headless --chrome --chromedriver /usr/bin/chromedriver crates/upload-wasm`.

use js_sys::{Array, Function, Object, Promise};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};
use web_sys::Blob;

use crate::wait::{Pool, Slot};
use crate::{Upload, Uploader, get, liveview_upload, string as get_str};

wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen(module = "/src/test_mock.js")]
extern "C" {
    #[wasm_bindgen(js_name = installMock)]
    fn install_mock(options: &JsValue) -> JsValue;
    #[wasm_bindgen(js_name = makeFile)]
    fn make_file(size: u32, name: &str, content_type: &str) -> Blob;
    #[wasm_bindgen(js_name = makeEntry)]
    fn make_entry(file: &Blob, meta: &JsValue) -> JsValue;
    #[wasm_bindgen(js_name = createAnswer)]
    fn create_answer(file: &Blob, request: &JsValue) -> Promise;
    #[wasm_bindgen(js_name = appCreate)]
    fn app_create(mock: &JsValue) -> Function;
    fn until(pred: &Function, ms: u32) -> Promise;
    #[wasm_bindgen(js_name = hashModule)]
    fn hash_module(mock: &JsValue, ms: u32) -> JsValue;
    fn sleep(ms: u32) -> Promise;
}

thread_local! {
    static SERIAL: std::rc::Rc<Pool> = Pool::new(1);
}

/// The mock replaces globals, and wasm-bindgen-test may interleave async
/// tests: each test holds this for its whole run.
async fn serial() -> Slot {
    SERIAL.with(|s| s.clone()).take().await
}

fn set(obj: &Object, key: &str, value: &JsValue) {
    let _ = js_sys::Reflect::set(obj, &JsValue::from_str(key), value);
}

fn obj(pairs: &[(&str, JsValue)]) -> JsValue {
    let o = Object::new();
    for (k, v) in pairs {
        set(&o, k, v);
    }
    o.into()
}

fn get_f64(obj: &JsValue, key: &str) -> Option<f64> {
    get(obj, key).as_f64()
}

fn num(v: f64) -> JsValue {
    JsValue::from(v)
}

fn uploader(concurrency: u32) -> Uploader {
    let options = obj(&[
        ("endpoint", "http://api.test/api/v1/".into()),
        ("token", "secret".into()),
        ("concurrency", num(f64::from(concurrency))),
        ("retryDelay", num(5.0)),
    ]);
    Uploader::new(options).unwrap_or_else(|_| panic!("options are valid"))
}

fn start(uploader: &Uploader, mock: &JsValue, file: &Blob) -> Upload {
    let on_progress = get(mock, "onProgress");
    uploader.upload(file.clone(), Some(obj(&[("onProgress", on_progress), ("meta", obj(&[("album", "7".into())]))])))
}

async fn done(upload: &Upload) -> Result<JsValue, JsValue> {
    JsFuture::from(upload.done()).await
}

fn code(err: &JsValue) -> String {
    get_str(err, "code").unwrap_or_default()
}

fn call(mock: &JsValue, method: &str, args: &[JsValue]) -> JsValue {
    let f: Function = get(mock, method).unchecked_into();
    f.apply(mock, &args.iter().collect::<Array>()).unwrap_or(JsValue::UNDEFINED)
}

fn count(mock: &JsValue, method: &str, pattern: &str) -> u32 {
    let re = js_sys::RegExp::new(pattern, "");
    Array::from(&call(mock, "apiRequests", &[method.into(), re.into()])).length()
}

/// The mock's own fault list (`Array::from` would copy it).
fn faults(mock: &JsValue) -> Array {
    get(mock, "faults").unchecked_into()
}

fn store_requests(mock: &JsValue) -> Array {
    Array::from(&call(mock, "storeRequests", &[]))
}

/// The events' `loaded` never decreases, the last one is `done` with
/// loaded == total, only the last one is `done`, and they are >= 50 ms apart.
fn assert_progress_well_formed(mock: &JsValue, total: f64) {
    let events = Array::from(&get(mock, "events"));
    assert!(events.length() > 0, "no progress events");
    let mut prev_loaded = -1.0;
    let mut prev_at = f64::NEG_INFINITY;
    for (i, e) in events.iter().enumerate() {
        let loaded = get_f64(&e, "loaded").unwrap();
        let at = get_f64(&e, "at").unwrap();
        assert!(loaded >= prev_loaded, "progress went back: {prev_loaded} -> {loaded}");
        // performance.now vs Date.now rounding: allow 2 ms.
        assert!(at - prev_at >= 48.0, "events {} ms apart", at - prev_at);
        let last = i as u32 == events.length() - 1;
        assert_eq!(get_str(&e, "state").as_deref() == Some("done"), last, "event {i} state");
        assert_eq!(get_f64(&e, "total"), Some(total));
        prev_loaded = loaded;
        prev_at = at;
    }
    assert_eq!(prev_loaded, total);
    let complete_at = get_f64(mock, "completeAnsweredAt").unwrap();
    assert!(complete_at > 0.0 && prev_at >= complete_at, "final event before /complete answered");
}

#[wasm_bindgen_test]
async fn small_file_goes_as_one_form_post() {
    let _serial = serial().await;
    let mock = install_mock(&obj(&[("plan", "S3".into())]));
    let file = make_file(1000, "cat.png", "image/png");
    let up = uploader(4);
    let upload = start(&up, &mock, &file);
    let record = done(&upload).await.expect("upload succeeds");
    assert_eq!(get_f64(&record, "size"), Some(1000.0));
    assert_eq!(get_str(&get(&record, "meta"), "album").as_deref(), Some("7"));
    assert_eq!(upload.state(), "done");
    assert_eq!(count(&mock, "GET", "^/config$"), 1);
    assert_eq!(count(&mock, "POST", "^/uploads$"), 1);
    assert_eq!(count(&mock, "POST", "/complete$"), 1);
    let stores = store_requests(&mock);
    assert_eq!(stores.length(), 1);
    assert_eq!(get_str(&stores.get(0), "method").as_deref(), Some("POST"));
    // The token goes to the API, never to the store.
    let api_log = Array::from(&get(&mock, "log"));
    assert_eq!(get_str(&api_log.get(0), "auth").as_deref(), Some("Bearer secret"));
    assert!(get(&get(&stores.get(0), "headers"), "authorization").is_undefined());
    assert_progress_well_formed(&mock, 1000.0);

    // A second file reuses the configuration.
    let second = start(&up, &mock, &make_file(10, "b.png", "image/png"));
    done(&second).await.expect("second upload succeeds");
    assert_eq!(count(&mock, "GET", "^/config$"), 1);
}

#[wasm_bindgen_test]
async fn refused_files_fail_before_any_request_of_their_own() {
    let _serial = serial().await;
    let config = obj(&[(
        "constraints",
        obj(&[
            ("max_file_size", num(500.0)),
            ("max_files", num(10.0)),
            ("accept", Array::of1(&"image/*".into()).into()),
        ]),
    )]);
    let mock = install_mock(&obj(&[("config", config)]));
    let up = uploader(4);
    let too_big = start(&up, &mock, &make_file(501, "big.png", "image/png"));
    let err = done(&too_big).await.expect_err("too large");
    assert_eq!(code(&err), "file_too_large");
    assert!(get_str(&err, "message").unwrap().contains("500"), "message names the limit");
    let wrong_type = start(&up, &mock, &make_file(10, "notes.txt", "text/plain"));
    assert_eq!(code(&done(&wrong_type).await.expect_err("refused type")), "type_not_accepted");
    let empty = start(&up, &mock, &make_file(0, "empty.png", "image/png"));
    assert_eq!(code(&done(&empty).await.expect_err("empty")), "invalid_request");
    // Only the configuration was asked for, once; nothing was created or sent.
    assert_eq!(Array::from(&get(&mock, "log")).length(), 1);
    assert_eq!(count(&mock, "GET", "^/config$"), 1);

    // Bad meta is refused before even the configuration is needed.
    let mock = install_mock(&JsValue::UNDEFINED);
    let bad_meta =
        uploader(4).upload(make_file(10, "a.png", "image/png"), Some(obj(&[("meta", obj(&[("n", num(1.0))]))])));
    assert_eq!(code(&done(&bad_meta).await.expect_err("meta must be strings")), "invalid_request");
    assert_eq!(Array::from(&get(&mock, "log")).length(), 0);
}

#[wasm_bindgen_test]
async fn api_errors_carry_the_contract_code_and_status() {
    let _serial = serial().await;
    let mock = install_mock(&obj(&[("createStatus", Array::of2(&num(409.0), &"too_many_files".into()).into())]));
    let upload = start(&uploader(4), &mock, &make_file(10, "a.bin", ""));
    let err = done(&upload).await.expect_err("server refuses");
    assert_eq!(code(&err), "too_many_files");
    assert_eq!(get_f64(&err, "status"), Some(409.0));
    assert!(err.is_instance_of::<js_sys::Error>());
    assert_eq!(upload.state(), "failed");
}

#[wasm_bindgen_test]
async fn multipart_keeps_concurrency_parts_in_flight_and_retries() {
    let _serial = serial().await;
    let mock = install_mock(&obj(&[
        ("plan", "S3Multipart".into()),
        ("partSize", num(100.0)),
        ("expireParts", Array::of1(&num(5.0)).into()),
    ]));
    // Part 2 answers 503 twice, part 7 drops the connection once.
    let faults = faults(&mock);
    faults.push(&obj(&[("part", num(2.0)), ("status", num(503.0)), ("times", num(2.0))]));
    faults.push(&obj(&[("part", num(7.0)), ("status", "network".into()), ("times", num(1.0))]));
    let upload = start(&uploader(3), &mock, &make_file(1050, "video.mp4", "video/mp4"));
    let record = done(&upload).await.expect("multipart upload succeeds despite faults");
    assert_eq!(get_f64(&record, "size"), Some(1050.0));
    assert_eq!(get_f64(&mock, "maxInflight"), Some(3.0));
    let puts = |n: f64| call(&mock, "putsOf", &[num(n)]).as_f64().unwrap();
    assert_eq!(puts(2.0), 3.0, "part 2: two 503s then success");
    assert_eq!(puts(7.0), 2.0, "part 7: one dropped connection then success");
    assert_eq!(puts(5.0), 2.0, "part 5: refused URL, signed again");
    assert_eq!(get_f64(&get(&mock, "sign"), "5"), Some(2.0));
    assert_eq!(get_f64(&get(&mock, "sign"), "1"), Some(1.0));
    // 11 parts asked for in batches of 2 x concurrency, not one by one.
    let sign_calls = count(&mock, "POST", "/parts$");
    assert!((2..=4).contains(&sign_calls), "{sign_calls} signing calls");
    assert_progress_well_formed(&mock, 1050.0);
}

#[wasm_bindgen_test]
async fn a_part_failing_every_try_fails_the_upload_and_deletes_it() {
    let _serial = serial().await;
    let mock = install_mock(&obj(&[("plan", "S3Multipart".into())]));
    faults(&mock).push(&obj(&[("part", num(1.0)), ("status", num(503.0)), ("times", num(99.0))]));
    let upload = start(&uploader(2), &mock, &make_file(300, "a.bin", ""));
    let err = done(&upload).await.expect_err("gives up");
    assert_eq!(code(&err), "storage_unavailable");
    let puts = call(&mock, "putsOf", &[num(1.0)]).as_f64().unwrap();
    assert_eq!(puts, 5.0, "five tries in all");
    assert_eq!(count(&mock, "DELETE", "^/uploads/u1$"), 1);
    assert_eq!(get_f64(&mock, "inflight"), Some(0.0), "nothing left in flight");

    // A store that cannot be reached: `network`, and no DELETE (the upload
    // may be resumed by id once the connection is back).
    let mock = install_mock(&obj(&[("plan", "S3".into())]));
    let fault =
        obj(&[("part", num(0.0)), ("method", "POST".into()), ("status", "network".into()), ("times", num(99.0))]);
    faults(&mock).push(&fault);
    let upload = start(&uploader(2), &mock, &make_file(300, "a.bin", ""));
    assert_eq!(code(&done(&upload).await.expect_err("no connection")), "network");
    assert_eq!(store_requests(&mock).length(), 5);
    assert_eq!(count(&mock, "DELETE", "."), 0);
}

#[wasm_bindgen_test]
async fn a_part_refused_for_its_checksum_is_signed_and_sent_again_a_bounded_number_of_times() {
    let _serial = serial().await;
    // Once: signed again (with a fresh checksum when checksums are on) and sent again.
    let mock = install_mock(&obj(&[("plan", "S3Multipart".into())]));
    let fault = obj(&[("part", num(2.0)), ("status", num(400.0)), ("code", "BadDigest".into()), ("times", num(1.0))]);
    faults(&mock).push(&fault);
    let upload = start(&uploader(2), &mock, &make_file(300, "a.bin", ""));
    done(&upload).await.expect("the part is sent again");
    assert_eq!(call(&mock, "putsOf", &[num(2.0)]).as_f64(), Some(2.0));
    assert_eq!(get_f64(&get(&mock, "sign"), "2"), Some(2.0), "part 2 signed again");

    // Every time: `checksum_mismatch` after the retries, and the upload deleted.
    let mock = install_mock(&obj(&[("plan", "S3Multipart".into())]));
    let fault = obj(&[
        ("part", num(1.0)),
        ("status", num(400.0)),
        ("code", "XAmzContentSHA256Mismatch".into()),
        ("times", num(99.0)),
    ]);
    faults(&mock).push(&fault);
    let upload = start(&uploader(2), &mock, &make_file(300, "a.bin", ""));
    let err = done(&upload).await.expect_err("gives up");
    assert_eq!(code(&err), "checksum_mismatch");
    assert_eq!(get_f64(&err, "status"), Some(400.0));
    assert_eq!(call(&mock, "putsOf", &[num(1.0)]).as_f64(), Some(5.0), "five tries in all");
    assert_eq!(count(&mock, "DELETE", "^/uploads/u1$"), 1);
}

/// An uploader with `checksums` on whose hash module is the mock's stand-in
/// (each sum takes `ms`), for a mock whose multipart threshold is 100 bytes.
fn summing_uploader(mock: &JsValue, concurrency: u32, ms: u32) -> Uploader {
    crate::hash::FAKE.with(|f| *f.borrow_mut() = Some(hash_module(mock, ms)));
    let options = obj(&[
        ("endpoint", "http://api.test/api/v1/".into()),
        ("concurrency", num(f64::from(concurrency))),
        ("retryDelay", num(5.0)),
        ("checksums", true.into()),
    ]);
    Uploader::new(options).unwrap_or_else(|_| panic!("options are valid"))
}

fn summing_mock() -> JsValue {
    let config = obj(&[("multipart_threshold", num(100.0))]);
    install_mock(&obj(&[("plan", "S3Multipart".into()), ("stepMs", num(5.0)), ("config", config)]))
}

/// Hashes started so far.
fn hashes(mock: &JsValue) -> u32 {
    Array::from(&get(mock, "sums")).length()
}

async fn until_stored_requests(mock: &JsValue, n: u32) {
    let m = mock.clone();
    let pred = Closure::<dyn Fn() -> bool>::new(move || store_requests(&m).length() >= n);
    JsFuture::from(until(&pred.into_js_value().unchecked_into(), 5000)).await.unwrap();
}

#[wasm_bindgen_test]
async fn checksums_are_computed_ahead_of_the_sends() {
    let _serial = serial().await;
    let mock = summing_mock();
    let upload = start(&summing_uploader(&mock, 2, 3), &mock, &make_file(1000, "a.bin", ""));
    // The mock refuses to sign a part without its SHA-256, so every URL,
    // signed ahead or not, carried the part's sum.
    done(&upload).await.expect("checksummed upload succeeds");
    assert_eq!(hashes(&mock), 10, "every part hashed once");
    assert!(get_f64(&mock, "maxHashing").unwrap() <= 3.0, "at most concurrency + 1 hashes at once");
    // The parts next in line are hashed while the first ones are sent (one
    // by one after each part stored, the parts of 2 workers would be 2), and
    // at most `concurrency` parts beyond those taken.
    let first_put_end = get_f64(&store_requests(&mock).get(0), "at").unwrap() + 4.0 * 5.0;
    let sums = Array::from(&get(&mock, "sums"));
    let ahead = sums.iter().filter(|s| get_f64(s, "start").unwrap() < first_put_end).count();
    assert!((3..=4).contains(&ahead), "{ahead} parts hashed before the first was stored");
    crate::hash::FAKE.with(|f| f.borrow_mut().take());
}

#[wasm_bindgen_test]
async fn pause_cancel_and_failure_stop_the_hashing() {
    let _serial = serial().await;
    // Pause: nothing is hashed while paused, and after resume no part is
    // hashed twice (the sums are kept).
    let mock = summing_mock();
    let upload = start(&summing_uploader(&mock, 2, 5), &mock, &make_file(2000, "a.bin", ""));
    until_stored_requests(&mock, 3).await;
    upload.pause();
    JsFuture::from(sleep(20)).await.unwrap();
    let hashed = hashes(&mock);
    JsFuture::from(sleep(60)).await.unwrap();
    assert_eq!(hashes(&mock), hashed, "nothing hashed while paused");
    assert_eq!(get_f64(&mock, "hashing"), Some(0.0));
    upload.resume();
    done(&upload).await.expect("resumed upload succeeds");
    assert_eq!(hashes(&mock), 20, "every part hashed once, the pause notwithstanding");

    // Cancel: the hashes under way end, no other starts.
    let mock = summing_mock();
    let upload = start(&summing_uploader(&mock, 2, 5), &mock, &make_file(2000, "a.bin", ""));
    until_stored_requests(&mock, 3).await;
    JsFuture::from(upload.cancel()).await.unwrap();
    let hashed = hashes(&mock);
    JsFuture::from(sleep(60)).await.unwrap();
    assert_eq!(hashes(&mock), hashed, "nothing hashed after cancel");
    assert!(hashed < 20, "{hashed} hashed of 20");

    // A part failing for good fails the upload; the hashing stops with it.
    let mock = summing_mock();
    faults(&mock).push(&obj(&[("part", num(2.0)), ("status", num(503.0)), ("times", num(99.0))]));
    let upload = start(&summing_uploader(&mock, 2, 5), &mock, &make_file(2000, "a.bin", ""));
    assert_eq!(code(&done(&upload).await.expect_err("gives up")), "storage_unavailable");
    let hashed = hashes(&mock);
    JsFuture::from(sleep(60)).await.unwrap();
    assert_eq!(hashes(&mock), hashed, "nothing hashed after the failure");
    assert_eq!(get_f64(&mock, "hashing"), Some(0.0));
    crate::hash::FAKE.with(|f| f.borrow_mut().take());
}

#[wasm_bindgen_test]
async fn chunked_follows_308_and_range() {
    let _serial = serial().await;
    let mock =
        install_mock(&obj(&[("plan", "Chunked".into()), ("chunkSize", num(256.0)), ("chunkShortBy", num(56.0))]));
    let upload = start(&uploader(4), &mock, &make_file(1000, "a.bin", "application/octet-stream"));
    let record = done(&upload).await.expect("chunked upload succeeds");
    assert_eq!(get_f64(&record, "size"), Some(1000.0));
    let ranges: Vec<String> = store_requests(&mock)
        .iter()
        .map(|r| get_str(&get(&r, "headers"), "content-range").unwrap_or_default())
        .collect();
    // The store kept 200 of the first 256 bytes; the next chunk starts at 200.
    assert_eq!(
        ranges,
        ["bytes 0-255/1000", "bytes 200-455/1000", "bytes 456-711/1000", "bytes 712-967/1000", "bytes 968-999/1000"]
    );
    let session_header = get_str(&get(&store_requests(&mock).get(0), "headers"), "x-session");
    assert_eq!(session_header.as_deref(), Some("u1"));
    assert_progress_well_formed(&mock, 1000.0);
}

#[wasm_bindgen_test]
async fn pause_stops_requests_and_resume_skips_stored_parts() {
    let _serial = serial().await;
    let mock = install_mock(&obj(&[("plan", "S3Multipart".into()), ("stepMs", num(5.0))]));
    let upload = start(&uploader(2), &mock, &make_file(1000, "a.bin", ""));
    let m = mock.clone();
    let stored = move || Array::from(&call(&m, "storedPartNumbers", &["u1".into()])).length();
    let s = stored.clone();
    JsFuture::from(until(&Closure::<dyn Fn() -> bool>::new(move || s() >= 3).into_js_value().unchecked_into(), 5000))
        .await
        .unwrap();
    upload.pause();
    assert_eq!(upload.state(), "paused");
    assert_eq!(get_f64(&mock, "inflight"), Some(0.0), "pause aborts requests in flight");
    let stored_at_pause = stored();
    let sent_at_pause = store_requests(&mock).length();
    JsFuture::from(sleep(60)).await.unwrap();
    assert_eq!(store_requests(&mock).length(), sent_at_pause, "nothing is sent while paused");
    let shown = upload.loaded();
    upload.resume();
    done(&upload).await.expect("resumed upload succeeds");
    assert_eq!(count(&mock, "GET", "^/uploads/u1$"), 1, "resume asks what is stored");
    for n in 1..=10 {
        let puts = call(&mock, "putsOf", &[num(f64::from(n))]).as_f64().unwrap();
        assert!(puts >= 1.0, "part {n} sent");
    }
    // Stored parts are not sent again: at most the 2 aborted ones are repeated.
    let total_puts = store_requests(&mock).length();
    assert!(total_puts <= 10 + 2, "{total_puts} PUTs for 10 parts");
    assert!(stored_at_pause >= 3);
    assert!(upload.loaded() >= shown);
    assert_progress_well_formed(&mock, 1000.0);
}

#[wasm_bindgen_test]
async fn cancel_aborts_and_deletes() {
    let _serial = serial().await;
    let mock = install_mock(&obj(&[("plan", "S3Multipart".into()), ("stepMs", num(5.0))]));
    let upload = start(&uploader(2), &mock, &make_file(1000, "a.bin", ""));
    let m = mock.clone();
    JsFuture::from(until(
        &Closure::<dyn Fn() -> bool>::new(move || store_requests(&m).length() >= 3).into_js_value().unchecked_into(),
        5000,
    ))
    .await
    .unwrap();
    JsFuture::from(upload.cancel()).await.unwrap();
    assert_eq!(count(&mock, "DELETE", "^/uploads/u1$"), 1, "cancel tells the server");
    assert_eq!(get_f64(&mock, "inflight"), Some(0.0));
    assert_eq!(code(&done(&upload).await.expect_err("cancelled")), "aborted");
    assert_eq!(upload.state(), "cancelled");
    let sent = store_requests(&mock).length();
    JsFuture::from(sleep(40)).await.unwrap();
    assert_eq!(store_requests(&mock).length(), sent, "nothing is sent after cancel");
    assert_eq!(count(&mock, "POST", "/complete$"), 0);
}

#[wasm_bindgen_test]
async fn several_files_share_one_concurrency_limit() {
    let _serial = serial().await;
    let mock = install_mock(&obj(&[("plan", "S3Multipart".into())]));
    let up = uploader(2);
    let uploads: Vec<Upload> = (0..3).map(|i| start(&up, &mock, &make_file(450 + i, "f.bin", ""))).collect();
    for (i, u) in uploads.iter().enumerate() {
        let record = done(u).await.expect("all files succeed");
        assert_eq!(get_f64(&record, "size"), Some(450.0 + i as f64));
    }
    assert_eq!(get_f64(&mock, "maxInflight"), Some(2.0));
    assert_eq!(count(&mock, "GET", "^/config$"), 1);
}

/// Waits until `entry` was told 100 or an error.
async fn settled(entry: &JsValue) {
    let e = entry.clone();
    JsFuture::from(until(
        &Closure::<dyn Fn() -> bool>::new(move || {
            Array::from(&get(&e, "progresses")).includes(&num(100.0), 0) || Array::from(&get(&e, "errors")).length() > 0
        })
        .into_js_value()
        .unchecked_into(),
        5000,
    ))
    .await
    .unwrap();
}

#[wasm_bindgen_test]
async fn liveview_uploaders_send_and_complete_with_the_scoped_token() {
    let _serial = serial().await;
    for plan in ["S3", "S3Multipart", "Chunked"] {
        let mock = install_mock(&obj(&[("plan", plan.into())]));
        let file = make_file(450, "photo.jpg", "image/jpeg");
        // The app's server created the upload; its answer is the entry's meta, unchanged.
        let meta = JsFuture::from(create_answer(&file, &JsValue::UNDEFINED)).await.unwrap();
        let id = get_str(&meta, "id").unwrap();
        let entry = make_entry(&file, &meta);
        liveview_upload(plan, Array::of1(&entry), JsValue::UNDEFINED);
        settled(&entry).await;
        assert_eq!(Array::from(&get(&entry, "errors")).length(), 0, "{plan}: {:?}", get(&entry, "errors"));
        let progresses: Vec<f64> = Array::from(&get(&entry, "progresses")).iter().filter_map(|p| p.as_f64()).collect();
        assert!(progresses.iter().all(|p| p.fract() == 0.0), "{plan}: {progresses:?}");
        assert!(progresses.windows(2).all(|w| w[0] <= w[1]), "{plan}: {progresses:?}");
        assert_eq!(progresses.iter().filter(|p| **p >= 100.0).count(), 1, "{plan}: {progresses:?}");
        // /complete was the browser's, with the upload's own token, before 100.
        let log = Array::from(&get(&mock, "log"));
        let complete = log
            .iter()
            .find(|e| get_str(e, "path").as_deref() == Some(&format!("/uploads/{id}/complete")))
            .unwrap_or_else(|| panic!("{plan}: no /complete"));
        assert_eq!(get_str(&complete, "auth").as_deref(), Some(format!("Bearer scoped-{id}").as_str()));
        let api_calls = log.iter().filter(|e| get_str(e, "kind").as_deref() == Some("api"));
        assert!(api_calls.skip(1).all(|e| get_str(&e, "auth").as_deref() != Some("Bearer user-token")));
    }
}

#[wasm_bindgen_test]
async fn liveview_uploaders_report_failures_to_the_entry() {
    let _serial = serial().await;
    // Not an answer of upload-server at all.
    install_mock(&obj(&[("plan", "S3".into())]));
    let bad = make_entry(
        &make_file(10, "x.jpg", "image/jpeg"),
        &obj(&[("uploader", "S3".into()), ("url", "http://store.test/nowhere".into())]),
    );
    liveview_upload("S3", Array::of1(&bad), JsValue::UNDEFINED);
    settled(&bad).await;
    assert!(!Array::from(&get(&bad, "progresses")).includes(&num(100.0), 0));
    // A multipart answer given to the S3 uploader.
    install_mock(&obj(&[("plan", "S3Multipart".into())]));
    let file = make_file(300, "y.bin", "");
    let meta = JsFuture::from(create_answer(&file, &JsValue::UNDEFINED)).await.unwrap();
    let wrong = make_entry(&file, &meta);
    liveview_upload("S3", Array::of1(&wrong), JsValue::UNDEFINED);
    settled(&wrong).await;
    let errors = Array::from(&get(&wrong, "errors"));
    assert!(errors.get(0).as_string().unwrap_or_default().contains("S3Multipart"), "{errors:?}");
}

#[wasm_bindgen_test]
async fn liveview_on_view_error_stops_the_requests_and_deletes_the_upload() {
    let _serial = serial().await;
    let mock = install_mock(&obj(&[("plan", "S3Multipart".into()), ("stepMs", num(5.0))]));
    let file = make_file(1000, "movie.mp4", "video/mp4");
    let meta = JsFuture::from(create_answer(&file, &JsValue::UNDEFINED)).await.unwrap();
    let entry = make_entry(&file, &meta);
    // LiveView hands the uploader a function to register its view-error callback with.
    let registered: std::rc::Rc<std::cell::RefCell<Option<Function>>> = Default::default();
    let keep = registered.clone();
    let on_view_error = Closure::<dyn Fn(Function)>::new(move |callback: Function| *keep.borrow_mut() = Some(callback));
    liveview_upload("S3Multipart", Array::of1(&entry), on_view_error.as_ref().clone());
    let m = mock.clone();
    JsFuture::from(until(
        &Closure::<dyn Fn() -> bool>::new(move || store_requests(&m).length() >= 2).into_js_value().unchecked_into(),
        5000,
    ))
    .await
    .unwrap();
    let callback = registered.borrow().clone().expect("the uploader registered for view errors");
    callback.call0(&JsValue::NULL).unwrap();
    let m = mock.clone();
    JsFuture::from(until(
        &Closure::<dyn Fn() -> bool>::new(move || count(&m, "DELETE", "^/uploads/u1$") == 1)
            .into_js_value()
            .unchecked_into(),
        5000,
    ))
    .await
    .expect("the upload is deleted");
    assert_eq!(get_f64(&mock, "inflight"), Some(0.0), "requests in flight aborted");
    let sent = store_requests(&mock).length();
    JsFuture::from(sleep(60)).await.unwrap();
    assert_eq!(store_requests(&mock).length(), sent, "nothing is sent after the view went away");
    assert_eq!(count(&mock, "POST", "/complete$"), 0);
    assert!(!Array::from(&get(&entry, "progresses")).includes(&num(100.0), 0));
}

#[wasm_bindgen_test]
async fn the_apps_create_step_creates_and_the_scoped_token_carries_the_rest() {
    let _serial = serial().await;
    let mock = install_mock(&obj(&[("plan", "S3Multipart".into())]));
    // No endpoint, no token: only the app's own creation step, asking for Chunked.
    let up = Uploader::new(obj(&[("create", app_create(&mock).into()), ("uploader", "Chunked".into())]))
        .unwrap_or_else(|_| panic!("create alone is enough"));
    let upload = start(&up, &mock, &make_file(700, "clip.bin", "video/mp4"));
    let record = done(&upload).await.expect("upload succeeds");
    assert_eq!(get_f64(&record, "size"), Some(700.0));
    // The app got the body of POST /uploads, with the plan asked for.
    let asked = Array::from(&get(&mock, "appCreated"));
    assert_eq!(asked.length(), 1);
    let request = asked.get(0);
    assert_eq!(get_str(&request, "name").as_deref(), Some("clip.bin"));
    assert_eq!(get_f64(&request, "size"), Some(700.0));
    assert_eq!(get_str(&request, "uploader").as_deref(), Some("Chunked"));
    assert_eq!(get_str(&get(&request, "meta"), "album").as_deref(), Some("7"));
    assert!(store_requests(&mock).iter().all(|r| get_str(&r, "method").as_deref() == Some("PUT")), "chunks");
    // No configuration to read without an endpoint; every call after the
    // app's create carried the upload-scoped token.
    assert_eq!(count(&mock, "GET", "^/config$"), 0);
    let calls: Vec<JsValue> =
        Array::from(&get(&mock, "log")).iter().filter(|e| get_str(e, "kind").as_deref() == Some("api")).collect();
    assert_eq!(get_str(&calls[0], "auth").as_deref(), Some("Bearer app-session"), "the app's create");
    assert!(calls.len() >= 2);
    for call in &calls[1..] {
        assert_eq!(get_str(call, "auth").as_deref(), Some("Bearer scoped-u1"), "{:?}", get_str(call, "path"));
    }
}

#[wasm_bindgen_test]
async fn the_apps_create_step_failing_fails_the_upload_with_its_code() {
    let _serial = serial().await;
    // The app passes upload-server's refusal on unchanged.
    let mock = install_mock(&obj(&[("createStatus", Array::of2(&num(413.0), &"file_too_large".into()).into())]));
    let up = Uploader::new(obj(&[("create", app_create(&mock).into())])).unwrap_or_else(|_| panic!("valid"));
    let err = done(&start(&up, &mock, &make_file(10, "a.bin", ""))).await.expect_err("refused");
    assert_eq!(code(&err), "file_too_large");
    // The app's step throws: its message, code `internal` (not one of ours).
    let throws = Function::new_with_args("request", "throw new Error('session expired')");
    let up = Uploader::new(obj(&[("create", throws.into())])).unwrap_or_else(|_| panic!("valid"));
    let err = done(&start(&up, &mock, &make_file(10, "a.bin", ""))).await.expect_err("thrown");
    assert_eq!(code(&err), "internal");
    assert!(get_str(&err, "message").unwrap_or_default().contains("session expired"));
}

#[wasm_bindgen_test]
async fn an_unknown_uploader_name_is_refused_before_any_request() {
    let _serial = serial().await;
    let mock = install_mock(&JsValue::UNDEFINED);
    let bad = obj(&[("endpoint", "http://api.test/api/v1".into()), ("uploader", "Tus".into())]);
    assert_eq!(code(&Uploader::new(bad).err().expect("refused")), "invalid_request");
    let upload = uploader(2).upload(make_file(10, "a.bin", ""), Some(obj(&[("uploader", "Tus".into())])));
    assert_eq!(code(&done(&upload).await.expect_err("refused")), "invalid_request");
    assert_eq!(Array::from(&get(&mock, "log")).length(), 0);
}

#[wasm_bindgen_test]
async fn uploader_needs_an_endpoint() {
    let _serial = serial().await;
    let err = Uploader::new(obj(&[])).err().expect("no endpoint, no create");
    assert_eq!(code(&err), "invalid_request");
    assert!(get_str(&err, "message").unwrap().contains("endpoint"));
}

/// A mock whose server keeps `max_files` pending uploads per owner.
fn mock_with_max_files(max_files: f64, extra: &[(&str, JsValue)]) -> JsValue {
    let constraints =
        obj(&[("max_file_size", num(1e6)), ("max_files", num(max_files)), ("accept", Array::new().into())]);
    let mut options = vec![("config", obj(&[("constraints", constraints)]))];
    options.extend(extra.iter().cloned());
    install_mock(&obj(&options))
}

/// The sizes of the batch requests the mock answered for `route` (`create`, `complete`).
fn batch_sizes(mock: &JsValue, route: &str) -> Vec<u32> {
    Array::from(&get(mock, "batches"))
        .iter()
        .filter(|b| get_str(b, "route").as_deref() == Some(route))
        .map(|b| get_f64(&b, "size").unwrap_or_default() as u32)
        .collect()
}

#[wasm_bindgen_test]
async fn a_folder_is_created_and_completed_in_a_few_batch_requests() {
    let _serial = serial().await;
    // Completes answer in 40 ms, so the ones that arrive while one is in
    // flight gather even when a loaded machine spreads the sends out.
    let mock = mock_with_max_files(100.0, &[("completeMs", num(40.0))]);
    let up = uploader(4);
    // Added in one loop, as a folder is.
    let uploads: Vec<Upload> =
        (0..30).map(|i| start(&up, &mock, &make_file(100 + i, &format!("f{i}.png"), "image/png"))).collect();
    for (i, u) in (0..).zip(&uploads) {
        let record = done(u).await.expect("every file succeeds");
        assert_eq!(get_str(&record, "name"), Some(format!("f{i}.png")));
        assert_eq!(get_f64(&record, "size"), Some(f64::from(100 + i)));
        assert_eq!(get_str(&get(&record, "meta"), "album").as_deref(), Some("7"));
        assert_eq!(u.state(), "done");
    }
    // The first create goes alone, at once; the 29 that came while it was in
    // flight go together in the next request.
    let (single_creates, creates) = (count(&mock, "POST", "^/uploads$"), batch_sizes(&mock, "create"));
    assert_eq!(single_creates, 1);
    assert_eq!(creates, [29]);
    // Completes gather while one is in flight; every upload is completed once.
    let single_completes = count(&mock, "POST", r"^/uploads/u\d+/complete$");
    let completes = batch_sizes(&mock, "complete");
    assert_eq!(single_completes + completes.iter().sum::<u32>(), 30);
    assert!(!completes.is_empty() && completes.iter().all(|n| *n >= 2), "{completes:?}");
    let log = Array::from(&get(&mock, "log"));
    let api_requests = log.iter().filter(|e| get_str(e, "kind").as_deref() == Some("api")).count() as u32;
    assert!(api_requests <= 1 + 2 + single_completes + completes.len() as u32);
    assert!(api_requests < 30, "{api_requests} API requests for 30 files");
    assert_eq!(store_requests(&mock).length(), 30, "one form POST per file");
}

#[wasm_bindgen_test]
async fn a_refused_outcome_in_a_batch_fails_only_its_upload() {
    let _serial = serial().await;
    let refuse = |status: f64, code: &str, times: f64| {
        obj(&[("status", num(status)), ("code", code.into()), ("times", num(times))])
    };
    let refusals = obj(&[
        // A type the client's own check passes (no accept list here) but the server refuses.
        ("bad.png", refuse(415.0, "type_not_accepted", 1.0)),
        // Another tab took the owner's last pending slot: fails, as the single create does.
        ("full.png", refuse(409.0, "too_many_files", 1.0)),
        // The database did not answer for this one, once: tried again, as the single create is.
        ("busy.png", refuse(503.0, "storage_unavailable", 1.0)),
    ]);
    let mock = mock_with_max_files(100.0, &[("refuse", refusals)]);
    let up = uploader(4);
    let names = ["first.png", "a.png", "bad.png", "b.png", "full.png", "busy.png", "c.png"];
    let uploads: Vec<Upload> = names.iter().map(|n| start(&up, &mock, &make_file(50, n, "image/png"))).collect();
    assert_eq!(batch_sizes(&mock, "create"), Vec::<u32>::new(), "the first goes alone, at once");
    for (name, u) in names.iter().zip(&uploads) {
        match *name {
            "bad.png" | "full.png" => {
                let err = done(u).await.expect_err("refused by the server");
                let (expected, status) =
                    if *name == "bad.png" { ("type_not_accepted", 415.0) } else { ("too_many_files", 409.0) };
                assert_eq!(code(&err), expected);
                assert_eq!(get_f64(&err, "status"), Some(status));
                assert_eq!(u.state(), "failed");
                assert_eq!(u.id(), None, "nothing was created for it");
            }
            _ => {
                let record = done(u).await.expect("the others succeed");
                assert_eq!(get_str(&record, "name").as_deref(), Some(*name));
            }
        }
    }
    // The refusals came in a batch's outcomes: the first create went alone,
    // the six others together.
    let creates = batch_sizes(&mock, "create");
    assert_eq!(creates[0], 6, "{creates:?}");
    // busy.png was sent again after the backoff (alone, as nothing else was
    // waiting then) and created on its second try: eight creates for seven files.
    let single_creates = count(&mock, "POST", "^/uploads$");
    assert_eq!(single_creates + creates.iter().sum::<u32>(), 8, "{single_creates} + {creates:?}");
    assert_eq!(store_requests(&mock).length(), 5);
}

#[wasm_bindgen_test]
async fn a_server_without_the_batch_routes_gets_single_requests_for_good() {
    let _serial = serial().await;
    let mock = mock_with_max_files(100.0, &[("noBatch", JsValue::TRUE)]);
    let up = uploader(4);
    let first: Vec<Upload> = (0..6).map(|i| start(&up, &mock, &make_file(60 + i, "f.png", "image/png"))).collect();
    for (i, u) in (0..).zip(&first) {
        assert_eq!(get_f64(&done(u).await.expect("succeeds singly"), "size"), Some(f64::from(60 + i)));
    }
    // One batch create was tried (405); after it, everything went singly,
    // the completes too.
    assert_eq!(count(&mock, "POST", "^/uploads/batch$"), 1);
    assert_eq!(count(&mock, "POST", "^/uploads/batch/complete$"), 0);
    assert_eq!(count(&mock, "POST", "^/uploads$"), 6);
    assert_eq!(count(&mock, "POST", r"^/uploads/u\d+/complete$"), 6);
    // For good: a second folder on the same Uploader asks no batch route.
    let second: Vec<Upload> = (0..4).map(|_| start(&up, &mock, &make_file(10, "g.png", "image/png"))).collect();
    for u in &second {
        done(u).await.expect("succeeds singly");
    }
    assert_eq!(count(&mock, "POST", "^/uploads/batch"), 1);
    assert_eq!(count(&mock, "POST", "^/uploads$"), 10);
}

#[wasm_bindgen_test]
async fn uploads_created_by_the_apps_step_complete_singly_with_their_scoped_tokens() {
    let _serial = serial().await;
    let mock = install_mock(&JsValue::UNDEFINED);
    let up = Uploader::new(obj(&[("create", app_create(&mock).into())])).unwrap_or_else(|_| panic!("valid"));
    let uploads: Vec<Upload> = (0..4).map(|_| start(&up, &mock, &make_file(20, "a.bin", ""))).collect();
    for u in &uploads {
        done(u).await.expect("succeeds");
    }
    // A batch acts for the owner; an upload-scoped token cannot.
    assert_eq!(count(&mock, "POST", "^/uploads/batch"), 0);
    assert_eq!(count(&mock, "POST", r"^/uploads/u\d+/complete$"), 4);
}

#[wasm_bindgen_test]
async fn a_batch_refused_as_a_whole_for_now_is_tried_again() {
    let _serial = serial().await;
    let mock = mock_with_max_files(100.0, &[("batchUnavailable", num(1.0))]);
    let up = uploader(4);
    let uploads: Vec<Upload> = (0..5).map(|i| start(&up, &mock, &make_file(30 + i, "f.png", "image/png"))).collect();
    for (i, u) in (0..).zip(&uploads) {
        assert_eq!(get_f64(&done(u).await.expect("succeeds after the 503"), "size"), Some(f64::from(30 + i)));
    }
    // The first alone; the four others in a batch answered 503 (a create's
    // "not now", tried again as the single create is), then created.
    let creates = batch_sizes(&mock, "create");
    assert_eq!(creates[0], 4, "{creates:?}");
    let single_creates = count(&mock, "POST", "^/uploads$");
    assert_eq!(single_creates + creates[1..].iter().sum::<u32>(), 5, "{single_creates} + {creates:?}");
}
