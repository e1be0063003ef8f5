
/** A LiveView upload entry, as Phoenix LiveView and pyview hand it to an uploader. */
export interface LiveViewEntry {
  file: File;
  /** upload-server's answer to POST /uploads, as the app's presign function passed it on. */
  meta: unknown;
  progress(percent: number): void;
  error(message?: string): void;
}
export type LiveViewUploader = (entries: LiveViewEntry[], onViewError: (callback: () => void) => void) => void;
/**
 * Uploaders for LiveView's and pyview's external uploads, one per plan
 * (`meta.uploader`): `new LiveSocket(url, Socket, { uploaders })` or
 * `window.Uploaders = { ...window.Uploaders, ...uploaders }`. Each loads the
 * package on first use (no `init()` needed), sends and completes the upload
 * with the answer's scoped token, reports whole percentages (100 once
 * /complete answered) or `entry.error(message)`, and aborts on `onViewError`.
 */
export declare const uploaders: { S3: LiveViewUploader; S3Multipart: LiveViewUploader; Chunked: LiveViewUploader };
