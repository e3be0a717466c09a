/**
 * The console's commands that do not send: users, history, verify, trust, whoami,
 * away/back and help. Each prints its result as text or, with `--json`, as one JSON line.
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { ALL } from "../domain/Conversation.ts"
import { fingerprint } from "../domain/Fingerprint.ts"
import { usernameKey } from "../domain/Presence.ts"
import { idToKey } from "../services/Crypto.ts"
import { peerView } from "../services/PeerSnapshot.ts"
import { trustChoices } from "../trust/Trust.ts"
import type { Ctx } from "./context.ts"
import { showGroupHistory } from "./groupCommands.ts"
import { COMMANDS } from "./parse.ts"
import { conversationLine, historyLines, peerLine, withVerified } from "./render.ts"

export const showUsers = (ctx: Ctx) =>
  Effect.gen(function*() {
    const list = yield* ctx.registry.list
    for (const p of list) ctx.state.names.set(p.key, p.username)
    ctx.out.result(list.length === 0 ? ["nobody else is here yet"] : list.map((p) => peerLine(peerView(p))), list.map(peerView))
  })

/** `history *all*`: each broadcast once, with its recipients' states. */
const showBroadcasts = (ctx: Ctx) =>
  Effect.gen(function*() {
    const rows = yield* ctx.history.inConversation(ALL)
    ctx.out.result(rows.length === 0 ? ["no broadcasts yet"] : rows.map((c) => conversationLine(c)), rows)
  })

/** `history [USER]`: USER's conversation, or all (`user` undefined); USER's messages are read then. */
export const showHistory = (ctx: Ctx, user: string | undefined) =>
  Effect.gen(function*() {
    if (user === ALL) return yield* showBroadcasts(ctx)
    if (user?.startsWith("#") === true) return yield* showGroupHistory(ctx, user)
    const verified = new Set((yield* ctx.history.pins()).filter((p) => p.verified).map((p) => p.username))
    const entries = withVerified(yield* ctx.history.conversation(user === undefined ? undefined : usernameKey(user)), verified)
    if (user !== undefined) ctx.state.unread.delete(usernameKey(user))
    else ctx.state.unread.clear()
    const none = user === undefined ? "no messages yet" : `no messages with ${user} yet`
    ctx.out.result(entries.length === 0 ? [none] : entries.flatMap(historyLines), entries)
  }).pipe(Effect.catch((e) => Effect.sync(() => ctx.out.fail(e.message))))

const orNone = <A>(self: Effect.Effect<Option.Option<A>, unknown>) => Effect.orElseSucceed(self, () => Option.none<A>())

/** Both fingerprints, and any other key the peer announced or presented, to compare aloud. */
export const verify = (ctx: Ctx, user: string) =>
  Effect.gen(function*() {
    const key = usernameKey(user)
    const pin = Option.map(yield* orNone(ctx.history.getPin(key)), fingerprint)
    const verified = Option.isSome(pin) && (yield* ctx.history.isVerified(key).pipe(Effect.orElseSucceed(() => false)))
    const peer = yield* ctx.registry.lookup(user)
    const announcedId = Option.isSome(peer) ? peer.value.id : undefined
    const announced = announcedId === undefined ? undefined : fingerprint(idToKey(announcedId))
    const presented = Option.map(yield* orNone(ctx.history.presentedKey(key)), fingerprint)
    const lines = [`your fingerprint:     ${ctx.identity.fingerprint}`]
    if (Option.isSome(pin)) {
      const state = verified ? "verified by you" : `NOT verified yet: compare it with ${user}, then \`trust ${user} FINGERPRINT\``
      lines.push(`${user}'s pinned key:  ${pin.value}  (${state})`)
    }
    if (announced !== undefined && (Option.isNone(pin) || pin.value !== announced)) {
      lines.push(`${user} announces:     ${announced}${Option.isSome(pin) ? "  (DIFFERENT from the pinned key)" : ""}`)
    }
    if (Option.isSome(presented)) {
      lines.push(`${user} presented:    ${presented.value}  (in a refused session; \`trust ${user} FINGERPRINT\` accepts it once compared)`)
    }
    if (Option.isNone(pin) && announced === undefined) lines.push(`no key known for ${user} yet (no secure session, no announced id)`)
    ctx.out.result(lines, {
      username: user,
      fingerprint: ctx.identity.fingerprint,
      pinned: Option.getOrNull(pin),
      verified,
      announced: announced ?? null,
      presented: Option.getOrNull(presented)
    })
  })

/** `trust USER FINGERPRINT`; without the fingerprint, the ones to compare (nothing is pinned). */
export const trust = (ctx: Ctx, user: string, typed: string) =>
  Effect.gen(function*() {
    if (typed === "") {
      const lines = trustChoices(user, yield* ctx.trust.pinned(user), yield* ctx.trust.presented(user))
      return lines.forEach(ctx.out.info)
    }
    const trusted = yield* ctx.trust.trustPeer(user, typed)
    ctx.out.info(`trusted ${user}'s key ${trusted}`)
    // Messages that waited for this decision go now.
    yield* ctx.sends.track(ctx.initiator.retryPending(user))
  }).pipe(Effect.catch((e) => Effect.sync(() => ctx.out.fail(e.message))))

export const setAway = (ctx: Ctx, away: boolean) =>
  Option.isSome(ctx.announcer)
    ? ctx.announcer.value.setAway(away).pipe(Effect.andThen(Effect.sync(() => ctx.out.info(away ? "you are away" : "you are back"))))
    : Effect.sync(() => ctx.out.fail("away/back need a running announcer (p2pchat start)"))

export const whoami = (ctx: Ctx) =>
  Effect.sync(() => {
    const { config, identity } = ctx
    ctx.out.result(
      [
        `${config.name ?? "(no name)"}  fingerprint ${identity.fingerprint}  UDP ${config.udpPort} TCP ${config.tcpPort}  data ${config.dataDir}` +
        `  downloads ${config.downloads}`
      ],
      {
        username: config.name ?? null,
        fingerprint: identity.fingerprint,
        id: identity.id,
        dataDir: config.dataDir,
        udpPort: config.udpPort,
        tcpPort: config.tcpPort,
        downloads: config.downloads
      }
    )
  })

/** The help: every command with its arguments, then the rules of the conversation and the keys. */
export const HELP: ReadonlyArray<string> = [
  "commands (with or without a slash: /users or users):",
  ...Object.entries(COMMANDS).filter(([, c]) => c.help !== "").map(([name, c]) => `  ${`${name} ${c.args}`.padEnd(44)} ${c.help}`),
  "in a conversation (after `chat USER`), a plain line is a message to USER; a command needs its slash,",
  "  unless it is alone on the line (quit, history) or names a known user or group (msg carol hi, history #team);",
  "  //text sends /text; an empty line ends the conversation",
  "groups: #NAME is a group where a USER goes (msg #team hi, chat #team, history #team); `group` lists them,",
  "  `group create team bob carol` makes one (its members: peers with pinned keys)",
  "files: `file bob report.pdf photos/` offers them; bob sees name, size and SHA-256 and types `accept ID`;",
  "  a progress line shows each transfer under way; `files` lists them all",
  "keys: Tab completes commands and names; Ctrl-C clears the line; Ctrl-D (at an empty line) leaves;",
  "  a paste of several lines is one message to the current conversation"
]

export const help = (ctx: Ctx) => Effect.sync(() => HELP.forEach(ctx.out.info))
