/**
 * One request of the web UI, from the checks (guard.ts) to the answer: the page's files, the
 * JSON API (api.ts), the live stream (live.ts) and the files (files.ts). Every answer carries
 * the security headers (CSP and the rest); every failure is `{"event":"error","message":...}`
 * with its status, as the CLI's `--json` reports errors.
 */
import * as Effect from "effect/Effect"
import * as HttpServerRequest from "effect/http/HttpServerRequest"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import * as Schema from "effect/Schema"
import type { Events } from "../services/Events.ts"
import { toJson } from "../ui/render.ts"
import * as Api from "./api.ts"
import type { Asset } from "./assets.ts"
import * as Files from "./files.ts"
import { judge, SECURITY_HEADERS } from "./guard.ts"
import { live } from "./live.ts"
import { WebError } from "./WebError.ts"

export interface AppContext {
  readonly services: Api.Services
  readonly events: Events["Service"]
  readonly files: Files.FileServices
  readonly assets: ReadonlyMap<string, Asset>
  readonly hosts: ReadonlySet<string>
  readonly token: string
}

/** The largest JSON body the API reads. */
export const MAX_BODY = 256 * 1024

const json = (value: unknown, status = 200) =>
  HttpServerResponse.text(toJson(value), { status, contentType: "application/json; charset=utf-8" })

const failure = (status: number, message: string) => json({ event: "error", message }, status)

/** The request's JSON body, checked against `schema`: 400 (or 413) with why when it does not fit. */
const bodyOf = <S extends Schema.Top & { readonly DecodingServices: never }>(schema: S) =>
  Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    const length = Number(request.headers["content-length"] ?? "0")
    if (length > MAX_BODY) return yield* new WebError({ status: 413, message: "the request is too large" })
    if (!(request.headers["content-type"] ?? "").startsWith("application/json")) {
      return yield* new WebError({ status: 415, message: "send JSON (Content-Type: application/json)" })
    }
    const text = yield* Effect.mapError(request.text, (cause) => new WebError({ status: 400, message: "the request's body could not be read", cause }))
    if (text.length > MAX_BODY) return yield* new WebError({ status: 413, message: "the request is too large" })
    return yield* Schema.decodeUnknownEffect(Schema.fromJsonString(schema))(text).pipe(
      Effect.mapError((cause) => new WebError({ status: 400, message: `bad request: ${cause.message}`, cause }))
    )
  })

const param = (url: URL, name: string) =>
  Effect.suspend(() => {
    const value = url.searchParams.get(name)
    return value === null || value === ""
      ? Effect.fail(new WebError({ status: 400, message: `the query needs ${name}` }))
      : Effect.succeed(value)
  })

/** The API's answer to one request that passed the checks; 404 for a path it does not know. */
const route = (ctx: AppContext, method: string, url: URL) => {
  const s = ctx.services
  const key = `${method} ${url.pathname}`
  switch (key) {
    case "GET /api/me":
      return Effect.succeed(json(Api.whoami(s)))
    case "GET /api/peers":
      return Effect.map(Api.peers(s), (v) => json(v))
    case "GET /api/keys":
      return Effect.map(Api.keys(s), (v) => json(v))
    case "GET /api/groups":
      return Effect.map(Api.groups(s), (v) => json(v))
    case "GET /api/history":
      return Effect.flatMap(param(url, "with"), (name) => Effect.map(Api.conversation(s, name), (v) => json(v)))
    case "GET /api/verify":
      return Effect.flatMap(param(url, "user"), (user) => Effect.map(Api.verify(s, user), (v) => json(v)))
    case "GET /api/events":
      return Effect.succeed(live(ctx.events))
    case "POST /api/send":
      return Effect.flatMap(bodyOf(Api.SendBody), (b) => Effect.map(Api.send(s, b), (v) => json(v)))
    case "GET /api/away":
      return Effect.map(Api.getAway(s), (v) => json(v))
    case "POST /api/away":
      return Effect.flatMap(bodyOf(Api.AwayBody), (b) => Effect.map(Api.setAway(s, b.away), (v) => json(v)))
    case "POST /api/trust":
      return Effect.flatMap(bodyOf(Api.TrustBody), (b) => Effect.map(Api.trust(s, b), (v) => json(v)))
    default:
      return Files.route(ctx.files, method, url, bodyOf).pipe(
        Effect.map((answer) => answer === undefined ? undefined : json(answer))
      )
  }
}

const withHeaders = (response: HttpServerResponse.HttpServerResponse, cookie: string | undefined) =>
  HttpServerResponse.setHeaders(response, cookie === undefined ? SECURITY_HEADERS : { ...SECURITY_HEADERS, "set-cookie": cookie })

/** The whole server: the checks, then the page's files or the API. */
export const app = (ctx: AppContext) =>
  Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    const url = new URL(request.url, "http://p2pchat.invalid")
    const verdict = judge({ method: request.method, headers: request.headers, urlToken: url.searchParams.get("token") ?? undefined }, ctx.hosts, ctx.token)
    if (verdict.status !== 200) return withHeaders(failure(verdict.status, verdict.reason), undefined)
    const cookie = verdict.setCookie
    // The address printed once carries the token: the page drops it from its URL (and history) at once.
    if (verdict.fromUrl && request.method === "GET" && !url.pathname.startsWith("/api/")) {
      return withHeaders(HttpServerResponse.redirect(url.pathname, { status: 303 }), cookie)
    }
    const asset = request.method === "GET" ? ctx.assets.get(url.pathname) : undefined
    if (asset !== undefined) return withHeaders(HttpServerResponse.uint8Array(asset.body, { contentType: asset.type }), cookie)
    const answer = yield* route(ctx, request.method, url).pipe(
      Effect.catch((e) =>
        Effect.succeed(e instanceof WebError ? failure(e.status, e.message) : failure(500, (e as { message?: string }).message ?? String(e)))
      )
    )
    return withHeaders(answer ?? failure(404, `nothing at ${request.method} ${url.pathname}`), cookie)
  })
