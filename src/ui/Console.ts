/**
 * The interactive console (cli.md "The console"): the original's words (users, chat,
 * history, msg, ...) with or without a slash, a current conversation that plain lines go
 * to, and the node's events printed as they happen, above the line being typed.
 *
 * On a terminal (stdin and stdout, without --json): a line editor with Tab completion,
 * colour, a bell and an unread count for messages outside the current conversation;
 * Ctrl-C clears the line, Ctrl-D leaves. Otherwise it reads a script: commands one a line
 * until the end of input, then waits (at most SETTLE_MS) for the sends it started, and
 * fails when any command failed. A standard input that is a device but no terminal
 * (/dev/null) is no script: the console only prints (`start` then serves until stopped).
 */
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import * as fs from "node:fs"
import type { GroupSendResult } from "../chat/GroupSend.ts"
import { Groups } from "../chat/Groups.ts"
import type { SendResult } from "../chat/Initiator.ts"
import type { SendError } from "../chat/SendError.ts"
import { groupIdOf } from "../domain/Conversation.ts"
import type { Mode } from "../domain/Mode.ts"
import { usernameKey } from "../domain/Presence.ts"
import { Announcer } from "../services/Announcer.ts"
import { Config } from "../services/Config.ts"
import { Crypto } from "../services/Crypto.ts"
import { Events, type UiEvent } from "../services/Events.ts"
import { History } from "../services/History.ts"
import { Initiator } from "../chat/Initiator.ts"
import { PeerRegistry } from "../services/PeerRegistry.ts"
import { Transfers } from "../transfer/Transfers.ts"
import { Trust } from "../trust/Trust.ts"
import * as Commands from "./commands.ts"
import { flushLogs, sawEvent } from "./ConsoleLog.ts"
import * as Files from "./fileCommands.ts"
import { type Ctx, groupNames, isKnown, knowGroup, makeState, type Services } from "./context.ts"
import { groupCommand } from "./groupCommands.ts"
import * as Talk from "./conversation.ts"
import { type Editor, type Input, makeEditor } from "./LineEditor.ts"
import { makeOutput, type Output } from "./Output.ts"
import { complete, type Parsed, parse, restAfter } from "./parse.ts"
import { messageHead } from "./render.ts"
import { screen } from "./Screen.ts"
import { makeSends } from "./Sends.ts"
import { colourWanted, tone } from "./style.ts"
import { dayLine, parseTime, zone } from "./time.ts"

/** How the console ended: the user left (or a script ended), or there was no input to read. */
export type ConsoleEnd = "quit" | "eof"

/** A script's command failed: the console's exit is a failure (exit 1). */
export class ConsoleFailed extends Data.TaggedError("ConsoleFailed")<{ readonly message: string }> {}

/** How long a script's end waits for the sends it started; on a terminal, leaving waits less. */
export const SETTLE_MS = 10_000
const LEAVE_SETTLE_MS = 5_000

/** Whether standard input is a device that is not a terminal (/dev/null), or closed. */
const noInput = (): boolean => {
  if (process.stdin.isTTY === true) return false
  try {
    return fs.fstatSync(0).isCharacterDevice()
  } catch {
    return true
  }
}

/** What an event does to the console: the names it knows, unread messages, the bell; then its line. */
const onEvent = (ctx: Ctx, e: UiEvent): void => {
  const { state, out } = ctx
  switch (e.event) {
    case "message": {
      const at = parseTime(e.at) ?? new Date()
      out.dayOf(at)
      out.event(e, Talk.messageLines(messageHead(e), e.text))
      // a group's message is the group's conversation, not its sender's
      const groupId = e.group === undefined ? undefined : groupIdOf(e.to)
      if (groupId !== undefined) knowGroup(state, { id: groupId, name: e.group! })
      const key = groupId === undefined ? usernameKey(e.from) : e.to!
      const name = groupId === undefined ? e.from : `#${e.group}`
      if (!ctx.editor.interactive || state.current?.key === key) return
      state.unread.set(key, { name, count: (state.unread.get(key)?.count ?? 0) + 1 })
      screen.bell()
      return Talk.refreshPrompt(ctx)
    }
    case "peer":
      if (e.status === "online" || e.status === "away") state.names.set(usernameKey(e.username), e.username)
      return out.event(e)
    case "warning":
      sawEvent(e.message)
      // in a conversation, a warning is said once, not with each message
      if (state.current !== undefined && state.warned.has(e.message)) return
      if (state.current !== undefined) state.warned.add(e.message)
      return out.event(e)
    case "error":
    case "info":
      sawEvent(e.message)
      return out.event(e)
    case "file":
      return Files.onTransfer(ctx, e)
    default:
      return out.event(e)
  }
}

/** The current conversation as `history` names it: a group by `#` and its id (its name may be shared). */
const currentName = (ctx: Ctx): string | undefined => {
  const current = ctx.state.current
  return current?.group === undefined ? current?.name : `#${current.group}`
}

/** Runs one command; true when it says to leave. */
const dispatch = (ctx: Ctx, p: Extract<Parsed, { readonly _tag: "command" }>): Effect.Effect<boolean> => {
  const user = p.args[0]?.text
  const run = (command: Effect.Effect<void>) => Effect.as(command, false)
  const usage = (text: string) => run(Effect.sync(() => ctx.out.usage(text)))
  switch (p.name) {
    case "users":
      return run(Commands.showUsers(ctx))
    case "chat":
      return run(Talk.chat(ctx, p.args))
    case "msg":
      return run(Talk.msg(ctx, p.line, p.ws))
    case "say":
      return run(Talk.sayHere(ctx, restAfter(p.line, p.ws, 0)))
    case "all":
      return run(Talk.all(ctx, p.line, p.ws))
    case "history":
      return run(Commands.showHistory(ctx, user === "--all" ? undefined : user ?? currentName(ctx)))
    case "away":
    case "back":
      return run(Commands.setAway(ctx, p.name === "away"))
    case "whoami":
      return run(Commands.whoami(ctx))
    case "verify":
      return user === undefined ? usage("verify USER") : run(Commands.verify(ctx, user))
    case "trust":
      return user === undefined ? usage("trust USER FINGERPRINT") : run(Commands.trust(ctx, user, p.args.slice(1).map((w) => w.text).join(" ")))
    case "group":
      return run(groupCommand(ctx, p.args))
    case "file":
      return run(Files.sendFiles(ctx, p.args))
    case "accept":
    case "decline":
      return run(Files.answer(ctx, user, p.name === "accept"))
    case "files":
      return run(Files.showFiles(ctx))
    case "help":
      return run(Commands.help(ctx))
    case "quit":
    case "exit":
      return Effect.succeed(true)
  }
}

/** One line typed (or read from a script); true when it says to leave. */
const onLine = (ctx: Ctx, input: Extract<Input, { readonly _tag: "line" }>): Effect.Effect<boolean> =>
  Effect.gen(function*() {
    if (yield* Talk.answered(ctx, input)) return false
    const parsed = parse(input.text, ctx.state.current !== undefined, (name) => isKnown(ctx.state, name))
    // what becomes a message is shown as one (echoSent); anything else as it was typed
    const sends = parsed._tag === "text" ||
      (parsed._tag === "command" && ((parsed.name === "msg" && parsed.args.length > 0 && restAfter(parsed.line, parsed.ws, 1).trim() !== "") ||
        ((parsed.name === "say" || parsed.name === "all") && restAfter(parsed.line, parsed.ws, 0).trim() !== "")))
    if (!sends) Talk.echoTyped(ctx, input)
    // A script's commands run in order: one that is not a message waits for the messages before it.
    if (!sends && !ctx.editor.interactive && ctx.sends.underWay() > 0) yield* ctx.sends.settle(SETTLE_MS)
    switch (parsed._tag) {
      case "empty":
        return yield* Effect.as(Talk.leave(ctx), false)
      case "text":
        return yield* Effect.as(Talk.sayHere(ctx, parsed.text), false)
      case "unknown":
        ctx.out.fail(`unknown command '${parsed.word}'; 'help' lists them`)
        return false
      case "command":
        return yield* dispatch(ctx, parsed)
    }
  })

/** Reads and runs until the user leaves or the input ends. */
const loop = (ctx: Ctx) =>
  Effect.gen(function*() {
    for (;;) {
      const input = yield* ctx.editor.next
      if (input._tag === "end") return
      if (input._tag === "paste") yield* Talk.paste(ctx, input.text)
      else if (yield* onLine(ctx, input)) return
    }
  })

/** The end: a script waits for its sends and fails when anything failed; on a terminal, leaving waits a little. */
const finish = (ctx: Ctx): Effect.Effect<ConsoleEnd, ConsoleFailed> =>
  Effect.gen(function*() {
    const { out, sends } = ctx
    if (ctx.editor.interactive) {
      const n = sends.underWay()
      if (n > 0) out.info(`waiting for ${n} message(s) to go (at most ${LEAVE_SETTLE_MS / 1000} s; what does not go stays pending)`)
      yield* sends.settle(LEAVE_SETTLE_MS)
      return "quit" as const
    }
    const left = yield* sends.settle(SETTLE_MS)
    if (left > 0) out.fail(`${left} send(s) not finished after ${SETTLE_MS / 1000} s (a message not delivered stays pending)`, left)
    // the events of the last sends (deliveries) are printed before the end
    yield* Effect.sleep(50)
    if (out.failures() > 0) return yield* new ConsoleFailed({ message: `${out.failures()} command(s) failed` })
    return "quit" as const
  })

const services: Effect.Effect<Services, never, Config | PeerRegistry | History | Initiator | Trust | Crypto | Groups> = Effect.gen(function*() {
  return {
    config: yield* Config,
    registry: yield* PeerRegistry,
    history: yield* History,
    initiator: yield* Initiator,
    trust: yield* Trust,
    groups: yield* Groups,
    identity: (yield* Crypto).identity,
    announcer: yield* Effect.serviceOption(Announcer),
    transfers: yield* Effect.serviceOption(Transfers)
  }
})

export const runConsole = Effect.gen(function*() {
  const s = yield* services
  const headless = noInput()
  const interactive = !headless && process.stdin.isTTY === true && process.stdout.isTTY === true && !s.config.json
  screen.setColour(interactive && colourWanted(process.stdout))
  const out: Output = makeOutput(s.config.json, new Date())
  const state = makeState()
  for (const p of yield* s.registry.list) state.names.set(p.key, p.username)
  for (const g of yield* Effect.orElseSucceed(s.groups.list, () => [])) knowGroup(state, g.state)
  const hint = () => [tone("dim", "(press Ctrl-D or type /quit to leave)")]
  const completer = (line: string) =>
    complete(line, [...state.names.values(), ...groupNames(state)], state.current !== undefined, Files.pathCandidates)
  const editor: Editor = headless ? noEditor : yield* makeEditor(interactive, { completer, hint })
  const holder: { ctx?: Ctx } = {}
  // `#` and a group's name or id: its members (Initiator.group); any other name: that peer
  const send = (to: string, text: string, mode: Mode | undefined): Effect.Effect<SendResult | GroupSendResult, SendError> =>
    to.startsWith("#") ? s.initiator.group(to, text) : s.initiator.send(to, text, mode)
  const sends = yield* makeSends(send, (to, outcome) => Talk.report(holder.ctx!)(to, outcome))
  const follower = Files.makeConsoleFollower(s.config.json)
  const ctx: Ctx = holder.ctx = { ...s, state, editor, out, sends, follower }
  yield* Effect.addFinalizer(() => Effect.sync(() => (follower.close(), flushLogs())))

  const incoming = yield* (yield* Events).subscribe
  yield* Effect.forkScoped(Stream.runForEach(incoming, (e) => Effect.sync(() => onEvent(ctx, e))))
  if (headless) return "eof" as ConsoleEnd

  if (interactive) {
    const now = new Date()
    out.text(
      `p2pchat: you are ${s.config.name ?? "(no name)"}; times are local (${zone(now)}). ` +
        `Type 'help' for commands; Tab completes; Ctrl-D or /quit leaves.`,
      [tone("dim", dayLine(now))]
    )
    Talk.refreshPrompt(ctx)
  }
  yield* loop(ctx)
  return yield* finish(ctx)
})

/** No input at all: nothing is read. */
const noEditor: Editor = {
  interactive: false,
  next: Effect.succeed({ _tag: "end" }),
  setPrompt: () => {},
  typed: () => "",
  clearTyped: () => {}
}

export { consoleLogger } from "./ConsoleLog.ts"
