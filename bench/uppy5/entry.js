// Bundled by esbuild into /uppy5.js for the bench page.
export { default as Uppy } from "@uppy/core";
export { default as AwsS3 } from "@uppy/aws-s3";
