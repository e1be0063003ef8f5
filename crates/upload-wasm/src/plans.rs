//! The three ways bytes reach the store (the `upload` plans of the contract).
//!
//! Each function sends what is still missing and returns; a pause or cancel
//! makes it return `aborted`, and the caller decides whether to resume.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use js_sys::{Array, Object, Promise};
use upload_core::PartPlan;
use upload_core::wire::MAX_PARTS_PER_SIGN_REQUEST;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::FormData;

use crate::api::{Api, Idempotent};
use crate::flow::Etags;
use crate::js::{Fail, get, get_str, get_u64, set, sleep, string_entries};
use crate::task::{Task, Verdict, judge};

/// A multipart form POST: every field, then the file as `file` (S3 reads
/// fields after the file as part of it, so the order matters).
pub(crate) async fn s3_post(task: &Rc<Task>, url: &str, fields: &[(String, String)]) -> Result<(), Fail> {
    let len = task.size as f64;
    let mut attempt = 1;
    loop {
        let form = FormData::new().map_err(|_| Fail::invalid("FormData is not available"))?;
        for (name, value) in fields {
            form.append_with_str(name, value).map_err(|_| Fail::invalid("bad form field"))?;
        }
        form.append_with_blob_and_filename("file", &task.file, &task.name)
            .map_err(|_| Fail::invalid("the file cannot be read"))?;
        let permit = task.ctx.slots.acquire().await;
        let sent = task.send(0, len, "POST", url, &[], &form.into()).await;
        drop(permit);
        match judge(sent, "the form POST", false) {
            Verdict::Ok(_) => {
                task.add_stored(0, len);
                return Ok(());
            }
            Verdict::Aborted => return Err(Fail::aborted()),
            Verdict::Fatal(f) | Verdict::Forbidden(f) => return Err(f),
            Verdict::Retry(f) => {
                if attempt >= task.ctx.retry.attempts {
                    return Err(f);
                }
                sleep(task.ctx.retry.delay(attempt)).await;
                attempt += 1;
            }
        }
    }
}

/// A signed request: URL and the headers that were signed with it.
pub(crate) struct Signed {
    url: String,
    headers: Vec<(String, String)>,
}

/// Where part URLs come from.
pub(crate) enum Signer {
    /// `POST {endpoint}/uploads/{id}/parts`, in batches, again after a 403.
    Api { api: Rc<Api>, id: String },
    /// URLs handed over up front (a LiveView presigner); a 403 is final.
    Fixed(Vec<String>),
}

/// The state of one multipart run, shared by its workers.
struct Run {
    plan: PartPlan,
    signer: Rc<Signer>,
    queue: RefCell<VecDeque<u32>>,
    /// By part number - 1.
    urls: RefCell<Vec<Option<Rc<Signed>>>>,
    /// A signing request in flight, for workers that need a URL from it.
    signing: RefCell<Option<Promise>>,
    etags: Etags,
    error: RefCell<Option<Fail>>,
}

impl Run {
    fn url(&self, number: u32) -> Option<Rc<Signed>> {
        self.urls.borrow().get(number as usize - 1).cloned().flatten()
    }

    fn set_url(&self, number: u32, signed: Option<Rc<Signed>>) {
        if let Some(slot) = self.urls.borrow_mut().get_mut((number as usize).wrapping_sub(1)) {
            *slot = signed;
        }
    }
}

/// Polls futures side by side on this one thread: cheaper than a spawned
/// task (and a Promise) per worker.
struct JoinAll<F>(Vec<Option<Pin<Box<F>>>>);

impl<F: Future<Output = ()>> Future for JoinAll<F> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut pending = false;
        for slot in self.0.iter_mut() {
            if let Some(f) = slot {
                if f.as_mut().poll(cx).is_ready() {
                    *slot = None;
                } else {
                    pending = true;
                }
            }
        }
        if pending { Poll::Pending } else { Poll::Ready(()) }
    }
}

/// Sends every part of `plan` not yet in `etags`, up to `concurrency` at a
/// time, and records each part's ETag there (an empty string when the
/// store's CORS rules hide the header; the caller then asks the server).
pub(crate) async fn multipart(task: &Rc<Task>, signer: Rc<Signer>, plan: PartPlan, etags: Etags) -> Result<(), Fail> {
    let (queue, stored): (VecDeque<u32>, f64) = {
        let mut done = etags.borrow_mut();
        done.resize(plan.part_count as usize, None);
        let stored_parts = || (1..=plan.part_count).filter(|n| done[*n as usize - 1].is_some());
        let stored = stored_parts().filter_map(|n| plan.part_range(n)).map(|(_, len)| len as f64).sum();
        let queue = (1..=plan.part_count).filter(|n| done[*n as usize - 1].is_none()).collect();
        (queue, stored)
    };
    task.set_stored(stored);
    let workers = task.ctx.concurrency.min(queue.len());
    let run = Rc::new(Run {
        plan,
        signer,
        queue: RefCell::new(queue),
        urls: RefCell::new(vec![None; plan.part_count as usize]),
        signing: RefCell::new(None),
        etags,
        error: RefCell::new(None),
    });
    // Wait for all of them, not just the first failure: no part may still be
    // on its way when the caller completes or deletes the upload.
    JoinAll((0..workers).map(|_| Some(Box::pin(worker(task.clone(), run.clone())))).collect()).await;
    match run.error.take() {
        Some(e) => Err(e),
        None if task.interrupted() => Err(Fail::aborted()),
        None => Ok(()),
    }
}

async fn worker(task: Rc<Task>, run: Rc<Run>) {
    let (task, run) = (&task, &run);
    loop {
        if run.error.borrow().is_some() || task.interrupted() {
            return;
        }
        let Some(number) = run.queue.borrow_mut().pop_front() else { return };
        if let Err(e) = put_part(task, run, number).await {
            if run.error.borrow().is_none() {
                *run.error.borrow_mut() = Some(e);
            }
            // One part failing for good fails the file: stop the others now.
            if !task.interrupted() {
                task.abort_requests();
            }
            return;
        }
    }
}

async fn put_part(task: &Rc<Task>, run: &Rc<Run>, number: u32) -> Result<(), Fail> {
    let Some((offset, len)) = run.plan.part_range(number) else { return Err(Fail::invalid("no such part")) };
    let body = task
        .file
        .slice_with_f64_and_f64(offset as f64, (offset + len) as f64)
        .map_err(|_| Fail::invalid("the file cannot be read"))?;
    let what = format!("part {number}");
    let mut attempt = 1;
    loop {
        let signed = url_for(task, run, number).await?;
        let permit = task.ctx.slots.acquire().await;
        if run.error.borrow().is_some() {
            return Err(Fail::aborted());
        }
        let sent = task.send(number, len as f64, "PUT", &signed.url, &signed.headers, &body.clone().into()).await;
        drop(permit);
        let fail = match judge(sent, &what, false) {
            Verdict::Ok(xhr) => {
                let etag = xhr.get_response_header("ETag").ok().flatten().unwrap_or_default();
                if let Some(slot) = run.etags.borrow_mut().get_mut(number as usize - 1) {
                    *slot = Some(etag);
                }
                task.add_stored(number, len as f64);
                return Ok(());
            }
            Verdict::Aborted => return Err(Fail::aborted()),
            Verdict::Fatal(f) => return Err(f),
            Verdict::Forbidden(f) => {
                // Most likely the URL expired while the part waited: sign again at once.
                run.set_url(number, None);
                if matches!(*run.signer, Signer::Fixed(_)) {
                    return Err(f);
                }
                f
            }
            Verdict::Retry(f) => {
                if attempt < task.ctx.retry.attempts {
                    sleep(task.ctx.retry.delay(attempt)).await;
                }
                f
            }
        };
        if attempt >= task.ctx.retry.attempts {
            return Err(fail);
        }
        attempt += 1;
    }
}

/// The URL for part `number`: from the cache, from a batch another worker
/// is fetching, or from a new batch of this part and the next ones queued.
async fn url_for(task: &Rc<Task>, run: &Rc<Run>, number: u32) -> Result<Rc<Signed>, Fail> {
    let (api, id) = match &*run.signer {
        Signer::Fixed(urls) => {
            let url = urls.get(number as usize - 1).ok_or_else(|| Fail::invalid("no URL for this part"))?;
            return Ok(Rc::new(Signed { url: url.clone(), headers: Vec::new() }));
        }
        Signer::Api { api, id } => (api.clone(), id.clone()),
    };
    loop {
        if let Some(signed) = run.url(number) {
            return Ok(signed);
        }
        if run.error.borrow().is_some() || task.interrupted() {
            return Err(Fail::aborted());
        }
        let pending = run.signing.borrow().clone();
        if let Some(pending) = pending {
            let _ = JsFuture::from(pending).await;
            continue;
        }
        // Twice the parts that can be in flight: enough to keep going, few
        // enough that URLs are fresh when used.
        let batch = (task.ctx.concurrency * 2).clamp(1, MAX_PARTS_PER_SIGN_REQUEST);
        let numbers: Vec<u32> = {
            let queue = run.queue.borrow();
            std::iter::once(number).chain(queue.iter().copied().filter(|n| run.url(*n).is_none())).take(batch).collect()
        };
        let (signing, done) = crate::js::promise_with_resolver();
        *run.signing.borrow_mut() = Some(signing);
        let result = sign(task, &api, &id, &numbers).await;
        *run.signing.borrow_mut() = None;
        let _ = done.call0(&JsValue::UNDEFINED);
        for (n, s) in result? {
            run.set_url(n, Some(Rc::new(s)));
        }
        if run.url(number).is_none() {
            return Err(Fail::new("internal", format!("the server signed no URL for part {number}")));
        }
    }
}

async fn sign(task: &Task, api: &Api, id: &str, numbers: &[u32]) -> Result<Vec<(u32, Signed)>, Fail> {
    let body = Object::new();
    let list: Array = numbers.iter().map(|n| JsValue::from(*n)).collect();
    set(&body, "part_numbers", &list);
    let path = format!("/uploads/{id}/parts");
    let answer = api.call_retrying("POST", &path, Some(&body), Idempotent::Yes, &task.ctx.retry).await?;
    let parts: Array = get(&answer, "parts").dyn_into().map_err(|_| bad_answer("parts"))?;
    let mut out = Vec::new();
    for part in parts.iter() {
        let number = get_u64(&part, "part_number").ok_or_else(|| bad_answer("part_number"))? as u32;
        let url = get_str(&part, "url").ok_or_else(|| bad_answer("url"))?;
        let headers = string_entries(&get(&part, "headers")).map_err(|_| bad_answer("headers"))?;
        out.push((number, Signed { url, headers }));
    }
    Ok(out)
}

pub(crate) fn bad_answer(field: &str) -> Fail {
    Fail::new("internal", format!("the server's answer has no valid `{field}`"))
}

/// GCS / UpChunk-style resumable upload: consecutive `Content-Range` PUTs to
/// one session URL; each answer but the last is 308 with a `Range` header
/// saying what is stored, and the next chunk starts right after it.
pub(crate) async fn chunked(
    task: &Rc<Task>,
    url: &str,
    chunk_size: u64,
    headers: &[(String, String)],
    resuming: bool,
) -> Result<(), Fail> {
    let total = task.size;
    let chunk_size = chunk_size.max(1);
    let mut offset = if resuming { stored_offset(task, url, headers).await? } else { 0 };
    task.set_stored(offset as f64);
    let mut attempt = 1;
    while offset < total {
        let end = (offset + chunk_size).min(total);
        let body = task
            .file
            .slice_with_f64_and_f64(offset as f64, end as f64)
            .map_err(|_| Fail::invalid("the file cannot be read"))?;
        let mut hdrs = headers.to_vec();
        hdrs.push(("Content-Range".to_owned(), format!("bytes {offset}-{}/{total}", end - 1)));
        let permit = task.ctx.slots.acquire().await;
        let sent = task.send(0, (end - offset) as f64, "PUT", url, &hdrs, &body.into()).await;
        drop(permit);
        match judge(sent, "a chunk", true) {
            Verdict::Ok(xhr) => {
                offset = next_offset(&xhr, total);
                task.set_stored(offset as f64);
                attempt = 1;
            }
            Verdict::Aborted => return Err(Fail::aborted()),
            Verdict::Fatal(f) | Verdict::Forbidden(f) => return Err(f),
            Verdict::Retry(f) => {
                if attempt >= task.ctx.retry.attempts {
                    return Err(f);
                }
                sleep(task.ctx.retry.delay(attempt)).await;
                attempt += 1;
                // Part of the chunk may have been stored before the failure.
                offset = stored_offset(task, url, headers).await?;
            }
        }
    }
    Ok(())
}

/// Asks the session what it holds: an empty PUT with `Content-Range: bytes */total`.
async fn stored_offset(task: &Rc<Task>, url: &str, headers: &[(String, String)]) -> Result<u64, Fail> {
    let mut hdrs = headers.to_vec();
    hdrs.push(("Content-Range".to_owned(), format!("bytes */{}", task.size)));
    let mut attempt = 1;
    loop {
        let sent = task.send(u32::MAX, 0.0, "PUT", url, &hdrs, &JsValue::NULL).await;
        match judge(sent, "the session status", true) {
            Verdict::Ok(xhr) => return Ok(next_offset(&xhr, task.size)),
            Verdict::Aborted => return Err(Fail::aborted()),
            Verdict::Fatal(f) | Verdict::Forbidden(f) => return Err(f),
            Verdict::Retry(f) => {
                if attempt >= task.ctx.retry.attempts {
                    return Err(f);
                }
                sleep(task.ctx.retry.delay(attempt)).await;
                attempt += 1;
            }
        }
    }
}

/// 200/201: everything is stored. 308: `Range: bytes=0-N` means N+1 bytes
/// are stored; no `Range` means none.
fn next_offset(xhr: &web_sys::XmlHttpRequest, total: u64) -> u64 {
    if xhr.status().unwrap_or(0) != 308 {
        return total;
    }
    let range = xhr.get_response_header("Range").ok().flatten().unwrap_or_default();
    parse_range_end(&range).map_or(0, |last| (last + 1).min(total))
}

/// The last byte of a `Range: bytes=0-N` header.
pub(crate) fn parse_range_end(range: &str) -> Option<u64> {
    let (start, end) = range.trim().strip_prefix("bytes=")?.split_once('-')?;
    if start.trim() != "0" {
        return None;
    }
    end.trim().parse().ok()
}

#[cfg(all(test, target_arch = "wasm32"))]
mod tests {
    use super::*;

    #[wasm_bindgen_test::wasm_bindgen_test]
    fn range_headers() {
        assert_eq!(parse_range_end("bytes=0-262143"), Some(262_143));
        assert_eq!(parse_range_end(" bytes=0-0 "), Some(0));
        assert_eq!(parse_range_end("bytes=5-9"), None);
        assert_eq!(parse_range_end(""), None);
        assert_eq!(parse_range_end("bytes=0-x"), None);
    }
}
