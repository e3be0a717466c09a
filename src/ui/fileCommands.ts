/**
 * The console's files (cli.md "The console"): `file USER|#GROUP PATH...` offers files and
 * folders, `accept ID` and `decline ID` answer an offer (the node running the console
 * fetches), `files` lists the transfers; and the transfers' events: an offer with its hint,
 * a progress line per transfer under way (redrawn in place, at most 4 times a second), and
 * the end of each.
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import type { FileOffer, TransferEvent } from "../domain/Transfer.ts"
import type { Transfers } from "../transfer/Transfers.ts"
import type { Ctx } from "./context.ts"
import { quoteName, type Word } from "./parse.ts"
import { makeFollower } from "./progress.ts"
import { screen } from "./Screen.ts"
import { fileRow, formatBytes, shortId, transferOf } from "./transferView.ts"

export const FILE_USAGE = "file USER|#GROUP PATH..."

/** The console's follower of transfers: lines and progress through the one printer. */
export const makeConsoleFollower = (json: boolean) => makeFollower(json, (line) => screen.print(line))

/** `~/x` as the home's `x`, and a relative path from the console's working directory. */
export const expandPath = (typed: string): string =>
  path.resolve(typed === "~" ? os.homedir() : typed.startsWith("~/") ? path.join(os.homedir(), typed.slice(2)) : typed)

/** Tab completion of a path being typed: the entries of its folder that start with what is typed (folders end in `/`). */
export const pathCandidates = (typed: string): Array<string> => {
  const bare = typed.replace(/^["']/, "")
  const slash = bare.lastIndexOf("/")
  const dirTyped = slash < 0 ? "" : bare.slice(0, slash + 1)
  const start = bare.slice(slash + 1)
  let entries: Array<fs.Dirent>
  try {
    entries = fs.readdirSync(expandPath(dirTyped === "" ? "." : dirTyped), { withFileTypes: true })
  } catch {
    return []
  }
  return entries
    .filter((e) => e.name.startsWith(start) && (start.startsWith(".") || !e.name.startsWith(".")))
    .slice(0, 500)
    .map((e) => `${quoteName(`${dirTyped}${e.name}`)}${e.isDirectory() ? "/" : " "}`)
    .sort()
}

/** The Transfers of the node, or why the console has none (`chat` alone runs no node). */
const transfersOf = (ctx: Ctx): Transfers["Service"] | undefined => {
  if (Option.isSome(ctx.transfers)) return ctx.transfers.value
  ctx.out.fail("files need the whole node: run `p2pchat start` (the console of `chat` cannot send or fetch files)")
  return undefined
}

/** `file USER|#GROUP PATH...`: hashes and offers in the background; the prompt does not wait. */
export const sendFiles = (ctx: Ctx, args: ReadonlyArray<Word>) =>
  Effect.gen(function*() {
    const to = args[0]?.text
    const given = args.slice(1).map((w) => w.text)
    if (to === undefined || given.length === 0) return ctx.out.usage(FILE_USAGE)
    const missing = given.find((p) => !fs.existsSync(expandPath(p)))
    if (missing !== undefined) return ctx.out.fail(`cannot send ${missing}: no such file or folder`)
    if (transfersOf(ctx) === undefined) return
    ctx.out.info(`hashing ${given.length === 1 ? given[0] : `${given.length} paths`} for ${to}...`)
    yield* ctx.sends.track(ctx.initiator.sendFile(to, given.map(expandPath)).pipe(
      Effect.match({
        onFailure: (e) => ctx.out.fail(`not offered: ${e.message}`),
        onSuccess: (sent) => offered(ctx, to, sent.offers, sent.recipients)
      })
    ))
  })

/** What the console says of offers made: each once (its `offered` event then adds nothing). */
const offered = (
  ctx: Ctx,
  to: string,
  offers: ReadonlyArray<FileOffer>,
  recipients: ReadonlyArray<{ readonly peer: string; readonly state: string; readonly reason?: string | undefined }>
): void => {
  for (const o of offers) {
    ctx.follower.seen(o.id, "offered")
    ctx.out.result([`offered ${o.name} (${formatBytes(o.size)}) to ${to} [${shortId(o.id)}]`], { event: "offered", to, ...o })
  }
  for (const r of recipients.filter((r) => r.state === "pending" || r.state === "failed")) {
    ctx.out.fail(`the offer is not delivered to ${r.peer} now${r.reason === undefined ? "" : `: ${r.reason}`}; it goes when ${r.peer} is heard`)
  }
}

/** The transfer an id (or the start of one, 4 characters at least) names, or undefined after saying why. */
const find = (ctx: Ctx, transfers: Transfers["Service"], given: string) =>
  Effect.gen(function*() {
    const all = yield* transfers.list
    const exact = all.find((t) => t.id === given)
    const hits = exact !== undefined ? [exact] : given.length >= 4 ? all.filter((t) => t.id.startsWith(given.toLowerCase())) : []
    if (hits.length === 1) return hits[0]!
    ctx.out.fail(hits.length > 1 ? `'${given}' names ${hits.length} transfers: give more of the id` : `no transfer '${given}'; 'files' lists them`)
    return undefined
  })

/** `accept ID` / `decline ID`: the node fetches an accepted offer; its progress and end are its events. */
export const answer = (ctx: Ctx, id: string | undefined, take: boolean) =>
  Effect.gen(function*() {
    if (id === undefined) return ctx.out.usage(take ? "accept ID" : "decline ID")
    const transfers = transfersOf(ctx)
    if (transfers === undefined) return
    const t = yield* find(ctx, transfers, id)
    if (t === undefined) return
    if (t.direction !== "in") return ctx.out.fail(`${shortId(t.id)} is a file you offered, not one offered to you`)
    const after = yield* (take ? transfers.accept(t.id) : transfers.decline(t.id))
    ctx.out.result([take ? `accepted ${after.name}: fetching from ${after.peer}` : `declined ${after.name} from ${after.peer}`], {
      event: "file",
      ...after
    })
  }).pipe(Effect.catch((e) => Effect.sync(() => ctx.out.fail(e.message))))

/** `files`: every transfer in and out, with its state. */
export const showFiles = (ctx: Ctx) =>
  Effect.gen(function*() {
    const transfers = transfersOf(ctx)
    if (transfers === undefined) return
    const all = yield* transfers.list
    ctx.out.result(all.length === 0 ? ["no transfers yet; `file USER PATH` offers one"] : all.map(fileRow), all)
  }).pipe(Effect.catch((e) => Effect.sync(() => ctx.out.fail(e.message))))

/** A transfer's event: with --json the event itself; else its change of state as a line, its progress as a status line. */
export const onTransfer = (ctx: Ctx, e: TransferEvent): void => {
  if (ctx.out.json) return ctx.out.event(e)
  ctx.follower.update(transferOf(e), e.rate)
  if (e.direction === "in" && e.state === "offered" && ctx.editor.interactive) screen.bell()
}
