// The disk's baseline of file-throughput: the same bytes written to a new file and made
// durable, nothing else: the file read in p2pchat's chunks (65,510 bytes), written through a
// write stream, fsync, close, fsync of the directory. No network, no crypto, no hash.
//
//   node bench/baseline/file-disk.mjs --src FILE --dst NEWFILE
// Prints {"start": true}, then {"done": true, "bytes": N, "ms": T}.
import * as fs from "node:fs"
import * as path from "node:path"
import { parseArgs } from "node:util"
import { CHUNK } from "./file-chunk.mjs"

const { values: opt } = parseArgs({ options: { src: { type: "string" }, dst: { type: "string" } } })
if (opt.src === undefined || opt.dst === undefined) throw new Error("--src FILE --dst NEWFILE are required")

process.stdout.write(JSON.stringify({ start: true }) + "\n")
const t0 = performance.now()
const out = fs.createWriteStream(opt.dst, { flags: "wx", highWaterMark: 1 << 20, autoClose: false })
let bytes = 0
for await (const chunk of fs.createReadStream(opt.src, { highWaterMark: CHUNK })) {
  bytes += chunk.length
  if (!out.write(chunk)) await new Promise((resolve) => out.once("drain", resolve))
}
await new Promise((resolve, reject) => out.end((e) => (e ? reject(e) : resolve())))
fs.fsyncSync(out.fd)
fs.closeSync(out.fd)
const dir = fs.openSync(path.dirname(opt.dst), "r")
fs.fsyncSync(dir)
fs.closeSync(dir)
process.stdout.write(JSON.stringify({ done: true, bytes, ms: performance.now() - t0 }) + "\n")
