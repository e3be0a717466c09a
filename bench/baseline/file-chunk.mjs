// Bytes of file in one message of a p2pchat file session: src/domain/FileWire.ts CHUNK_BYTES
// (one Noise message of 65,535 bytes holds a 16-byte tag, a 9-byte header and the chunk).
// The file-throughput baselines use the same size; bench/figures/files.mjs checks it.
export const CHUNK = 65_510
