/**
 * The web UI's one error: a request the API could not do (its HTTP status and why, the
 * service's error kept as `cause`), or a server that could not start (`Bind`, `Usage`).
 */
import * as Data from "effect/Data"

export class WebError extends Data.TaggedError("WebError")<{
  /** Usage: a bad --web-port or --web-bind; Bind: the port could not be listened on; Request: one request failed. */
  readonly reason?: "Usage" | "Bind" | "Request"
  /** The HTTP status the request gets (Request). */
  readonly status: number
  readonly message: string
  readonly cause?: unknown
}> {}
