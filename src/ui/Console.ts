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
import { Initiator, type SendMode } from "../services/Initiator.ts"
import { PeerRegistry } from "../services/PeerRegistry.ts"
import { peerView } from "../services/PeerSnapshot.ts"
import { trustPeer } from "../services/SecureSession.ts"
import { historyLine, peerLine, render } from "./render.ts"

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
  trust USER            accept USER's new key after comparing fingerprints
  help                  this list
  quit                  leave`

interface LineIO {
  /** The next line, or none at the end of input. Shows `prompt` on a terminal. */
  readonly ask: (prompt: string) => Effect.Effect<Option.Option<string>>
  /** Prints above the line being typed, then redraws it. */
  readonly print: (text: string) => Effect.Effect<void>
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
            rl.setPrompt(prompt)
            rl.prompt()
            prompting = true
          }
          const line = yield* Queue.take(lines)
          prompting = false
          return line === null ? Option.none() : Option.some(line)
        }),
      print: (text) =>
        Effect.sync(() => {
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

export const runConsole = Effect.gen(function*() {
  const config = yield* Config
  const events = yield* Events
  const registry = yield* PeerRegistry
  const history = yield* History
  const initiator = yield* Initiator
  const { identity } = yield* Crypto
  const announcer = yield* Effect.serviceOption(Announcer)
  const interactive = process.stdin.isTTY === true && process.stdout.isTTY === true
  const io = yield* makeLineIO(interactive)
  const say = io.print

  const incoming = yield* events.subscribe
  yield* Effect.forkScoped(Stream.runForEach(incoming, (e) => say(render(config.json)(e))))

  const send = (user: string, text: string, mode: SendMode | undefined) =>
    initiator.send(user, text, mode).pipe(
      Effect.flatMap((r) =>
        r.state === "sent" ? say(`  sent to ${r.peer} (classic peers do not confirm delivery)`) : Effect.void
      ),
      Effect.catch((e) => say(`! not delivered: ${e.message}`))
    )

  const askLine = (prompt: string) => Effect.map(io.ask(prompt), Option.map((s) => s.trim()))

  const chat = (userArg: string | undefined) =>
    Effect.gen(function*() {
      const user = userArg ?? Option.getOrUndefined(yield* askLine("Enter the username: "))
      if (user === undefined || user === "") return
      const peer = yield* registry.lookup(user)
      if (Option.isNone(peer)) return yield* say(`! no user '${user}' is online; 'users' lists who is`)
      let secure: boolean | undefined
      while (secure === undefined) {
        const answer = yield* askLine("secure or unsecure? ")
        if (Option.isNone(answer)) return
        const a = answer.value.toLowerCase()
        if (a === "secure" || a === "") secure = true
        else if (a === "unsecure") secure = false
        else yield* say("please answer secure or unsecure")
      }
      const classicPeer = peer.value.proto === "classic"
      const mode: SendMode = !secure ? "plain" : classicPeer ? "classic" : "secure"
      if (mode === "classic") yield* say(`! ${CLASSIC_WARNING}`)
      if (mode === "plain") yield* say("! unsecure: the messages cross the LAN unencrypted")
      yield* say(`chatting with ${peer.value.username} (${mode}); an empty line ends the chat`)
      for (;;) {
        const text = yield* io.ask(`${peer.value.username}> `)
        if (Option.isNone(text) || text.value.trim() === "") break
        yield* send(peer.value.username, text.value, mode)
      }
      yield* initiator.close(peer.value.username)
    })

  const showHistory = (user: string | undefined) =>
    history.conversation(user === undefined ? undefined : usernameKey(user)).pipe(
      Effect.flatMap((entries) =>
        config.json
          ? say(JSON.stringify(entries))
          : entries.length === 0
          ? say(user === undefined ? "no messages yet" : `no messages with ${user} yet`)
          : Effect.forEach(entries, (h) => say(historyLine(h)), { discard: true })
      ),
      Effect.catch((e) => say(`! ${e.message}`))
    )

  const verify = (user: string) =>
    Effect.gen(function*() {
      yield* say(`your fingerprint:     ${identity.fingerprint}`)
      const pin = yield* history.getPin(usernameKey(user)).pipe(Effect.orElseSucceed(() => Option.none<Uint8Array>()))
      const peer = yield* registry.lookup(user)
      if (Option.isSome(pin)) yield* say(`${user}'s pinned key:  ${fingerprint(pin.value)}`)
      const announced = Option.isSome(peer) ? peer.value.id : undefined
      if (announced !== undefined && (Option.isNone(pin) || fingerprint(pin.value) !== fingerprint(idToKey(announced)))) {
        yield* say(`${user} announces:     ${fingerprint(idToKey(announced))}${Option.isSome(pin) ? "  (DIFFERENT from the pinned key)" : ""}`)
      }
      const presented = yield* history.presentedKey(usernameKey(user)).pipe(Effect.orElseSucceed(() => Option.none<Uint8Array>()))
      if (Option.isSome(presented)) {
        yield* say(`${user} presented:    ${fingerprint(presented.value)}  (in a refused session; \`trust ${user}\` accepts it)`)
      }
      if (Option.isNone(pin) && announced === undefined) yield* say(`no key known for ${user} yet (no secure session, no announced id)`)
    })

  const trust = (user: string) =>
    Effect.gen(function*() {
      const trusted = yield* trustPeer(user).pipe(Effect.provideService(PeerRegistry, registry), Effect.provideService(History, history))
      yield* say(`trusted ${user}'s key ${trusted}`)
      // Messages that waited for this decision go now.
      yield* Effect.forkScoped(initiator.retryPending(user))
    }).pipe(Effect.catch((e) => say(`! ${e.message}`)))

  const setAway = (away: boolean) =>
    Option.isSome(announcer)
      ? announcer.value.setAway(away).pipe(Effect.andThen(say(away ? "you are away" : "you are back")))
      : say("! away/back need a running announcer (p2pchat start)")

  const dispatch = (line: string): Effect.Effect<ConsoleEnd | undefined, never, never> =>
    Effect.gen(function*() {
      const [word = "", ...rest] = line.trim().split(/\s+/)
      const arg = rest[0]
      switch (word.toLowerCase()) {
        case "":
          return undefined
        case "users": {
          const list = yield* registry.list
          if (config.json) yield* say(JSON.stringify(list.map(peerView)))
          else if (list.length === 0) yield* say("nobody else is here yet")
          else yield* Effect.forEach(list, (p) => say(peerLine(peerView(p))), { discard: true })
          return undefined
        }
        case "chat":
          yield* chat(arg)
          return undefined
        case "msg": {
          const text = line.trim().replace(/^\S+\s+\S+\s?/, "")
          if (arg === undefined || text === "") yield* say("usage: msg USER TEXT")
          else yield* send(arg, text, undefined)
          return undefined
        }
        case "history":
          yield* showHistory(arg)
          return undefined
        case "away":
        case "back":
          yield* setAway(word.toLowerCase() === "away")
          return undefined
        case "whoami":
          yield* say(`${config.name ?? "(no name)"}  fingerprint ${identity.fingerprint}  UDP ${config.udpPort} TCP ${config.tcpPort}  data ${config.dataDir}`)
          return undefined
        case "verify":
          if (arg === undefined) yield* say("usage: verify USER")
          else yield* verify(arg)
          return undefined
        case "trust":
          if (arg === undefined) yield* say("usage: trust USER")
          else yield* trust(arg)
          return undefined
        case "help":
          yield* say(HELP)
          return undefined
        case "quit":
        case "exit":
          return "quit" as const
        default:
          yield* say(`unknown command '${word}'; 'help' lists them`)
          return undefined
      }
    }) as Effect.Effect<ConsoleEnd | undefined>

  if (interactive) yield* say(`p2pchat: you are ${config.name ?? "(no name)"}. Type 'help' for commands.`)
  for (;;) {
    const line = yield* io.ask("> ")
    if (Option.isNone(line)) return "eof" as ConsoleEnd
    const end = yield* dispatch(line.value)
    if (end !== undefined) return end
  }
})
