export { createUpload } from "@mux/upchunk";
