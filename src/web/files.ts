/**
 * The web UI's file transfers (docs/web.md "API"), over the node's Transfers when it has
 * them: the list (`files --json`'s objects), accepting and declining an offer, and sending
 * a file the page uploads (upload.ts) as `send-file` sends a path. Progress comes on the
 * live stream as the `file` events of Events (`TransferEvent`).
 */
import * as Effect from "effect/Effect"
import type * as HttpServerRequest from "effect/http/HttpServerRequest"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { Initiator } from "../chat/Initiator.ts"
import { Config } from "../services/Config.ts"
import { Transfers } from "../transfer/Transfers.ts"
import { saveUpload } from "./upload.ts"
import { WebError } from "./WebError.ts"

export const services = Effect.gen(function*() {
  return { transfers: yield* Effect.serviceOption(Transfers), initiator: yield* Initiator, config: yield* Config }
})

export type FileServices = Effect.Success<typeof services>

const IdBody = Schema.Struct({ id: Schema.String })

type BodyOf = <S extends Schema.Top & { readonly DecodingServices: never }>(
  schema: S
) => Effect.Effect<S["Type"], WebError, HttpServerRequest.HttpServerRequest>

const asWeb = (e: { readonly reason: string; readonly message: string }) =>
  new WebError({ status: e.reason === "NotFound" ? 404 : e.reason === "Usage" || e.reason === "Refused" ? 400 : 500, message: e.message, cause: e })

/**
 * `POST /api/files/send?to=NAME&name=FILE`: the body saved, then offered to NAME (a peer, or
 * `#` and a group's id or name); the answer is `send-file --json`'s object.
 */
const sendUpload = (f: FileServices, url: URL) =>
  Effect.gen(function*() {
    const to = url.searchParams.get("to") ?? ""
    const name = url.searchParams.get("name") ?? ""
    if (to === "" || to === "*all*") return yield* new WebError({ status: 400, message: "send a file to a peer or a group" })
    const file = yield* saveUpload(f.config.dataDir, name, f.config.maxFileSize)
    return yield* f.initiator.sendFile(to, [file]).pipe(
      Effect.mapError((e) => new WebError({ status: e._tag === "SendError" ? 502 : 400, message: e.message, cause: e }))
    )
  })

/** The answer to a files request, or undefined for a path that is not one. */
export const route = (
  f: FileServices,
  method: string,
  url: URL,
  bodyOf: BodyOf
): Effect.Effect<unknown, WebError, HttpServerRequest.HttpServerRequest> => {
  if (!url.pathname.startsWith("/api/files")) return Effect.succeed(undefined)
  if (Option.isNone(f.transfers)) return Effect.fail(new WebError({ status: 501, message: "this node does not transfer files" }))
  const t = f.transfers.value
  switch (`${method} ${url.pathname}`) {
    case "GET /api/files":
      return Effect.mapError(t.list, asWeb)
    case "POST /api/files/accept":
      return Effect.flatMap(bodyOf(IdBody), (b) => Effect.mapError(t.accept(b.id), asWeb))
    case "POST /api/files/decline":
      return Effect.flatMap(bodyOf(IdBody), (b) => Effect.mapError(t.decline(b.id), asWeb))
    case "POST /api/files/send":
      return sendUpload(f, url)
    default:
      return Effect.succeed(undefined)
  }
}
