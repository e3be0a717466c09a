/**
 * The interactive console (CLI.md "The console"): the original's words first (users,
 * chat, history), then msg, away/back, whoami, verify, trust, help, quit. Incoming
 * events print above the line being typed without garbling it. When standard input is
 * not a terminal, the same commands are read one per line, without prompts.
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as readline from "node:readline"
import { CLASSIC_WARNING } from "../domain/Classic.ts"
import { fingerprint } from "../domain/Fingerprint.ts"
import { usernameKey } from "../domain/Presence.ts"
import { Announcer } from "../services/Announcer.ts"
import { Config } from "../services/Config.ts"
import { Crypto, idToKey } from "../services/Crypto.ts"
import { Events } from "../services/Events.ts"
import { History } from "../services/History.ts"
import { Initiator } from "../chat/Initiator.ts"
import { type Mode, MODE_WORD } from "../domain/Mode.ts"
import { PeerRegistry } from "../services/PeerRegistry.ts"
import { peerView } from "../services/PeerSnapshot.ts"
import { Trust, trustChoices } from "../trust/Trust.ts"
import { clean, historyLine, peerLine, render, toJson, withVerified } from "./render.ts"

/** How the console ended: the user quit, or its input ended. */
export type ConsoleEnd = "quit" | "eof"

const HELP = `commands:
  users                 who is on the LAN, with status
  chat [USER]           chat with USER (asks for the user, then secure or unsecure)
  msg USER TEXT         send one message (secure when the peer can)
  history [USER]        the conversation with USER, or all
  away / back           tell the others you are away, or back
  whoami                your name and fingerprint
  verify USER           both fingerprints, to compare aloud with USER
  trust USER FPRINT     accept USER's key with the fingerprint you compared (trust USER shows them)
  help                  this list
  quit                  leave`

interface LineIO {
  /** The next line, or none at the end of input. Shows `prompt` on a terminal. */
  readonly ask: (prompt: string) => Effect.Effect<Option.Option<string>>
  /** Prints one line above the line being typed, then redraws it; sanitised (`clean`) here. */
  readonly print: (line: string) => Effect.Effect<void>
}

const makeLineIO = (interactive: boolean): Effect.Effect<LineIO, never, Scope.Scope> =>
  Effect.gen(function*() {
    const lines = yield* Queue.unbounded<string | null>()
    const rl = yield* Effect.acquireRelease(
      Effect.sync(() =>
        readline.createInterface({
          input: process.stdin,
          ...(interactive ? { output: process.stdout, terminal: true } : { terminal: false })
        })
      ),
      (rl) => Effect.sync(() => rl.close())
    )
    rl.on("line", (line) => Queue.offerUnsafe(lines, line))
    rl.on("close", () => Queue.offerUnsafe(lines, null))
    let prompting = false
    return {
      ask: (prompt) =>
        Effect.gen(function*() {
          if (interactive) {
            rl.setPrompt(clean(prompt))
            rl.prompt()
            prompting = true
          }
          const line = yield* Queue.take(lines)
          prompting = false
          return line === null ? Option.none() : Option.some(line)
        }),
      print: (line) =>
        Effect.sync(() => {
          // The one way out to the terminal: whatever a peer chose is escaped here.
          const text = clean(line)
          if (interactive && prompting) {
            readline.clearLine(process.stdout, 0)
            readline.cursorTo(process.stdout, 0)
            process.stdout.write(`${text}\n`)
            rl.prompt(true)
          } else {
            process.stdout.write(`${text}\n`)
          }
        })
    }
  })

/** What the commands work with: the node's services and the console's line I/O. */
interface Ctx {
  readonly config: Config["Service"]
  readonly registry: PeerRegistry["Service"]
  readonly history: History["Service"]
  readonly initiator: Initiator["Service"]
  readonly trust: Trust["Service"]
  readonly identity: Crypto["Service"]["identity"]
  readonly announcer: Option.Option<Announcer["Service"]>
  readonly io: LineIO
  readonly say: (text: string) => Effect.Effect<void>
}

const send = (ctx: Ctx, user: string, text: string, mode: Mode | undefined) =>
  ctx.initiator.send(user, text, mode).pipe(
    Effect.flatMap((r) =>
      r.state === "sent" ? ctx.say(`  sent to ${r.peer} (classic peers do not confirm delivery)`) : Effect.void
    ),
    Effect.catch((e) => ctx.say(`! not delivered: ${e.message}`))
  )

const askLine = (ctx: Ctx, prompt: string) => Effect.map(ctx.io.ask(prompt), Option.map((s) => s.trim()))

/** Asks until the answer is secure (the default) or unsecure; none when input ends. */
const askSecure = (ctx: Ctx): Effect.Effect<Option.Option<boolean>> =>
  Effect.gen(function*() {
    for (;;) {
      const answer = yield* askLine(ctx, "secure or unsecure? ")
      if (Option.isNone(answer)) return Option.none()
      const a = answer.value.toLowerCase()
      if (a === "secure" || a === "") return Option.some(true)
      if (a === "unsecure") return Option.some(false)
      yield* ctx.say("please answer secure or unsecure")
    }
  })

/** The original's chat: asks for the user and the mode, then sends each line until an empty one. */
const chat = (ctx: Ctx, userArg: string | undefined) =>
  Effect.gen(function*() {
    const user = userArg ?? Option.getOrUndefined(yield* askLine(ctx, "Enter the username: "))
    if (user === undefined || user === "") return
    const peer = yield* ctx.registry.lookup(user)
    if (Option.isNone(peer)) return yield* ctx.say(`! no user '${user}' is online; 'users' lists who is`)
    const secure = yield* askSecure(ctx)
    if (Option.isNone(secure)) return
    const classicPeer = peer.value.proto === "classic"
    const mode: Mode = !secure.value ? "plain" : classicPeer ? "classic-3des" : "noise"
    if (mode === "classic-3des") yield* ctx.say(`! ${CLASSIC_WARNING}`)
    if (mode === "plain") yield* ctx.say("! unsecure: the messages cross the LAN unencrypted")
    yield* ctx.say(`chatting with ${peer.value.username} (${MODE_WORD[mode]}); an empty line ends the chat`)
    for (;;) {
      const text = yield* ctx.io.ask(`${peer.value.username}> `)
      if (Option.isNone(text) || text.value.trim() === "") break
      yield* send(ctx, peer.value.username, text.value, mode)
    }
    yield* ctx.initiator.close(peer.value.username)
  })

const showUsers = (ctx: Ctx) =>
  Effect.gen(function*() {
    const list = yield* ctx.registry.list
    if (ctx.config.json) yield* ctx.say(toJson(list.map(peerView)))
    else if (list.length === 0) yield* ctx.say("nobody else is here yet")
    else yield* Effect.forEach(list, (p) => ctx.say(peerLine(peerView(p))), { discard: true })
  })

const showHistory = (ctx: Ctx, user: string | undefined) =>
  Effect.gen(function*() {
    const verified = new Set((yield* ctx.history.pins()).filter((p) => p.verified).map((p) => p.username))
    return withVerified(yield* ctx.history.conversation(user === undefined ? undefined : usernameKey(user)), verified)
  }).pipe(
    Effect.flatMap((entries) =>
      ctx.config.json
        ? ctx.say(toJson(entries))
        : entries.length === 0
        ? ctx.say(user === undefined ? "no messages yet" : `no messages with ${user} yet`)
        : Effect.forEach(entries, (h) => ctx.say(historyLine(h)), { discard: true })
    ),
    Effect.catch((e) => ctx.say(`! ${e.message}`))
  )

/** Both fingerprints, and any other key the peer announced or presented, to compare aloud. */
const verify = (ctx: Ctx, user: string) =>
  Effect.gen(function*() {
    const { history, say } = ctx
    yield* say(`your fingerprint:     ${ctx.identity.fingerprint}`)
    const pin = yield* history.getPin(usernameKey(user)).pipe(Effect.orElseSucceed(() => Option.none<Uint8Array>()))
    const peer = yield* ctx.registry.lookup(user)
    if (Option.isSome(pin)) {
      const verified = yield* history.isVerified(usernameKey(user)).pipe(Effect.orElseSucceed(() => false))
      yield* say(`${user}'s pinned key:  ${fingerprint(pin.value)}  (${verified ? "verified by you" : `NOT verified yet: compare it with ${user}, then \`trust ${user} FINGERPRINT\``})`)
    }
    const announced = Option.isSome(peer) ? peer.value.id : undefined
    if (announced !== undefined && (Option.isNone(pin) || fingerprint(pin.value) !== fingerprint(idToKey(announced)))) {
      yield* say(`${user} announces:     ${fingerprint(idToKey(announced))}${Option.isSome(pin) ? "  (DIFFERENT from the pinned key)" : ""}`)
    }
    const presented = yield* history.presentedKey(usernameKey(user)).pipe(Effect.orElseSucceed(() => Option.none<Uint8Array>()))
    if (Option.isSome(presented)) {
      yield* say(`${user} presented:    ${fingerprint(presented.value)}  (in a refused session; \`trust ${user} FINGERPRINT\` accepts it once compared)`)
    }
    if (Option.isNone(pin) && announced === undefined) yield* say(`no key known for ${user} yet (no secure session, no announced id)`)
  })

/** `trust USER FINGERPRINT`; without the fingerprint, the ones to compare (nothing is pinned). */
const trust = (ctx: Ctx, user: string, typed: string) =>
  Effect.gen(function*() {
    if (typed === "") {
      const lines = trustChoices(user, yield* ctx.trust.pinned(user), yield* ctx.trust.presented(user))
      return yield* Effect.forEach(lines, ctx.say, { discard: true })
    }
    const trusted = yield* ctx.trust.trustPeer(user, typed)
    yield* ctx.say(`trusted ${user}'s key ${trusted}`)
    // Messages that waited for this decision go now.
    yield* Effect.forkScoped(ctx.initiator.retryPending(user))
  }).pipe(Effect.catch((e) => ctx.say(`! ${e.message}`)))

const setAway = (ctx: Ctx, away: boolean) =>
  Option.isSome(ctx.announcer)
    ? ctx.announcer.value.setAway(away).pipe(Effect.andThen(ctx.say(away ? "you are away" : "you are back")))
    : ctx.say("! away/back need a running announcer (p2pchat start)")

const whoami = (ctx: Ctx) => {
  const { config } = ctx
  return ctx.say(
    `${config.name ?? "(no name)"}  fingerprint ${ctx.identity.fingerprint}  UDP ${config.udpPort} TCP ${config.tcpPort}  data ${config.dataDir}`
  )
}

/** Runs one command line; says how the console ends, if it does. */
const dispatch = (ctx: Ctx, line: string): Effect.Effect<ConsoleEnd | undefined, never, Scope.Scope> => {
  const [word = "", ...rest] = line.trim().split(/\s+/)
  const arg = rest[0]
  const run = (command: Effect.Effect<void, never, Scope.Scope>) => Effect.as(command, undefined)
  switch (word.toLowerCase()) {
    case "":
      return Effect.succeed(undefined)
    case "users":
      return run(showUsers(ctx))
    case "chat":
      return run(chat(ctx, arg))
    case "msg": {
      const text = line.trim().replace(/^\S+\s+\S+\s?/, "")
      return run(arg === undefined || text === "" ? ctx.say("usage: msg USER TEXT") : send(ctx, arg, text, undefined))
    }
    case "history":
      return run(showHistory(ctx, arg))
    case "away":
    case "back":
      return run(setAway(ctx, word.toLowerCase() === "away"))
    case "whoami":
      return run(whoami(ctx))
    case "verify":
      return run(arg === undefined ? ctx.say("usage: verify USER") : verify(ctx, arg))
    case "trust":
      return run(arg === undefined ? ctx.say("usage: trust USER FINGERPRINT") : trust(ctx, arg, rest.slice(1).join(" ")))
    case "help":
      return run(Effect.forEach(HELP.split("\n"), ctx.say, { discard: true }))
    case "quit":
    case "exit":
      return Effect.succeed("quit")
    default:
      return run(ctx.say(`unknown command '${word}'; 'help' lists them`))
  }
}

export const runConsole = Effect.gen(function*() {
  const config = yield* Config
  const events = yield* Events
  const services = {
    config,
    registry: yield* PeerRegistry,
    history: yield* History,
    initiator: yield* Initiator,
    trust: yield* Trust,
    identity: (yield* Crypto).identity,
    announcer: yield* Effect.serviceOption(Announcer)
  }
  const interactive = process.stdin.isTTY === true && process.stdout.isTTY === true
  const io = yield* makeLineIO(interactive)
  const ctx: Ctx = { ...services, io, say: io.print }

  const incoming = yield* events.subscribe
  yield* Effect.forkScoped(Stream.runForEach(incoming, (e) => ctx.say(render(config.json)(e))))

  if (interactive) yield* ctx.say(`p2pchat: you are ${config.name ?? "(no name)"}. Type 'help' for commands.`)
  for (;;) {
    const line = yield* io.ask("> ")
    if (Option.isNone(line)) return "eof" as ConsoleEnd
    const end = yield* dispatch(ctx, line.value)
    if (end !== undefined) return end
  }
})
