// Uppy Companion as the signer of the Uppy peer: `companion.app()` from
// @uppy/companion (its /s3/params and /s3/multipart endpoints) in an express
// server, one worker per core with node:cluster (Node runs JS on one thread;
// Companion keeps no state for S3 uploads, so the workers need not share any).
//
//   node bench/companion/server.mjs
//
// Env: COMPANION_PORT, COMPANION_WORKERS (default: the cores), COMPANION_ORIGINS
// (comma-separated; default any), COMPANION_DATA (a scratch directory),
// COMPANION_S3_ENDPOINT, TEST_S3_BUCKET, TEST_S3_REGION, AWS_ACCESS_KEY_ID,
// AWS_SECRET_ACCESS_KEY. Prints "companion listening on PORT" once every
// worker listens. Metrics off (its Prometheus middleware is optional).
import cluster from "node:cluster";
import os from "node:os";

const port = Number(process.env.COMPANION_PORT || 3020);
const workers = Number(process.env.COMPANION_WORKERS || os.availableParallelism());

process.env.NODE_ENV ||= "production";
if (cluster.isPrimary) {
  let ready = 0;
  cluster.on("message", (_w, msg) => {
    if (msg === "listening" && ++ready === workers) console.log(`companion listening on ${port} (${workers} workers)`);
  });
  cluster.on("exit", (w, code) => {
    console.error(`companion worker ${w.process.pid} exited ${code}`);
    process.exit(1);
  });
  for (let i = 0; i < workers; i++) cluster.fork();
  const stop = () => {
    for (const w of Object.values(cluster.workers)) w.kill();
    process.exit(0);
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
} else {
  const { default: express } = await import("express");
  const companion = await import("@uppy/companion");
  const origins = process.env.COMPANION_ORIGINS ? process.env.COMPANION_ORIGINS.split(",") : true;
  const { app } = companion.app({
    secret: "bench-companion-secret-not-for-production",
    filePath: process.env.COMPANION_DATA || os.tmpdir(),
    server: { host: `127.0.0.1:${port}`, protocol: "http" },
    corsOrigins: origins,
    metrics: false,
    // Only for Companion's remote-URL fetching, which the benchmark does not
    // use; without it Companion refuses to start with NODE_ENV=production.
    uploadUrls: ["http://127.0.0.1/never"],
    s3: {
      key: process.env.AWS_ACCESS_KEY_ID,
      secret: process.env.AWS_SECRET_ACCESS_KEY,
      bucket: process.env.TEST_S3_BUCKET,
      region: process.env.TEST_S3_REGION || "us-east-1",
      endpoint: process.env.COMPANION_S3_ENDPOINT || process.env.TEST_S3_ENDPOINT,
      forcePathStyle: true,
      expires: 3600,
      // The AWS SDK Companion 6.2.2 ships (3.986) adds flexible checksums by
      // default: every presigned UploadPart URL carries
      // x-amz-checksum-crc32=AAAAAA== (the CRC32 of an empty body), which the
      // store rightly refuses for a real part, so Uppy re-sent every part
      // until it gave up. WHEN_REQUIRED is the SDK's documented opt-out, the
      // setting a Companion user on any S3-compatible store needs.
      awsClientOptions: { requestChecksumCalculation: "WHEN_REQUIRED" },
    },
  });
  const server = express();
  server.use(app);
  server.listen(port, "127.0.0.1", () => process.send("listening"));
}
