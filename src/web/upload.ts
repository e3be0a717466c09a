/**
 * Sending a file from the page (dropped on the conversation, or picked): the browser has its
 * bytes, not a path, so the request's body (`application/octet-stream`) is written to a file
 * of its own under `<data dir>/web-uploads/<random>/NAME` (mode 0600, created exclusively),
 * which is then offered as `send-file` offers a path. The copy stays there: the receiver
 * fetches it from there, perhaps much later (a peer who is away).
 */
import * as Effect from "effect/Effect"
import * as HttpServerRequest from "effect/http/HttpServerRequest"
import * as Stream from "effect/Stream"
import { randomUUID } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { WebError } from "./WebError.ts"

export const UPLOADS = "web-uploads"

/** The name the file keeps: the last part of what the browser gave, refused when it could be a path or hide something. */
export const fileNameOf = (given: string): string | undefined => {
  const name = given.normalize("NFC")
  if (name === "" || name === "." || name === ".." || Buffer.byteLength(name, "utf8") > 255) return undefined
  // eslint-disable-next-line no-control-regex
  if (/[/\\\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]/.test(name)) return undefined
  return name
}

const failed = (status: number, message: string) => (cause: unknown) => new WebError({ status, message, cause })

/** Writes the request's body to a new file under `dataDir`; its path. At most `maxBytes`. */
export const saveUpload = (dataDir: string, given: string, maxBytes: number) =>
  Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    const name = fileNameOf(given)
    if (name === undefined) return yield* new WebError({ status: 400, message: "that file name cannot be sent (a path, a control character, or too long)" })
    if (!(request.headers["content-type"] ?? "").startsWith("application/octet-stream")) {
      return yield* new WebError({ status: 415, message: "send the file's bytes (Content-Type: application/octet-stream)" })
    }
    const declared = Number(request.headers["content-length"] ?? "0")
    if (declared > maxBytes) return yield* new WebError({ status: 413, message: `the file is larger than the limit (${maxBytes} bytes)` })
    const dir = path.join(dataDir, UPLOADS, randomUUID())
    const file = path.join(dir, name)
    const handle = yield* Effect.acquireRelease(
      Effect.tryPromise({
        try: async () => {
          await fs.promises.mkdir(dir, { recursive: true, mode: 0o700 })
          return fs.promises.open(file, "wx", 0o600)
        },
        catch: failed(500, `cannot write ${file}`)
      }),
      (fh) => Effect.promise(() => fh.close())
    )
    let written = 0
    yield* Stream.runForEach(Stream.mapError(request.stream, failed(400, "the upload was cut off")), (chunk) =>
      Effect.gen(function*() {
        written += chunk.byteLength
        if (written > maxBytes) return yield* new WebError({ status: 413, message: `the file is larger than the limit (${maxBytes} bytes)` })
        yield* Effect.tryPromise({ try: () => handle.write(chunk), catch: failed(500, `cannot write ${file}`) })
      })).pipe(
        Effect.tapError(() => Effect.promise(() => fs.promises.rm(dir, { recursive: true, force: true })))
      )
    yield* Effect.tryPromise({ try: () => handle.sync(), catch: failed(500, `cannot write ${file}`) })
    return file
  }).pipe(Effect.scoped)
