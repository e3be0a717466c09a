/**
 * The current conversation and what sends: `chat USER [--secure|--plain|--classic]` makes
 * USER current (its mode a flag, secure by default for a p2pchat peer; the original's
 * `secure`/`unsecure` answer still works, as a word after the name or as the first line),
 * plain lines then go to USER, `msg USER TEXT` sends one message anywhere, a paste of
 * several lines is one message, and an empty line leaves the conversation.
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type { BroadcastResult } from "../chat/Broadcast.ts"
import type { GroupSendResult } from "../chat/GroupSend.ts"
import type { SendResult } from "../chat/Initiator.ts"
import { CLASSIC_WARNING } from "../domain/Classic.ts"
import { ALL, groupConversation } from "../domain/Conversation.ts"
import { type Mode, MODE_WORD } from "../domain/Mode.ts"
import type { Peer } from "../domain/Peer.ts"
import { usernameKey } from "../domain/Presence.ts"
import type { Ctx } from "./context.ts"
import { knowGroup, promptOf } from "./context.ts"
import { reportCopies } from "./groupCommands.ts"
import type { Input } from "./LineEditor.ts"
import { restAfter, type Word, words } from "./parse.ts"
import { recipientLine } from "./render.ts"
import type { Outcome } from "./Sends.ts"
import { screen } from "./Screen.ts"
import { type Line, paint, type Segment, tone } from "./style.ts"
import { clock } from "./time.ts"

/** Pastes of more lines than this are sent only after the user says yes. */
export const PASTE_CONFIRM_LINES = 5

/** A message's lines: the first after `head`, each further one marked, so no text can pass for a line of its own. */
export const messageLines = (head: ReadonlyArray<Segment>, text: string): ReadonlyArray<Line> => {
  const [first = "", ...more] = text.split(/\r?\n/)
  return [[...head, first], ...more.map((l): Line => [tone("dim", "  | "), l])]
}

/** On a terminal: what the user sent, as the console shows it (`[21:15:30] me -> bob: hello`). */
export const echoSent = (ctx: Ctx, to: string, text: string): void => {
  if (!ctx.editor.interactive) return
  const now = new Date()
  ctx.out.dayOf(now)
  ctx.out.text(...messageLines([tone("time", `[${clock(now)}]`), " ", tone("self", "me -> "), tone("name", to), ": "], text))
}

/** On a terminal: a command line as it was typed, dimmed, so the output below it says what it answers. */
export const echoTyped = (ctx: Ctx, input: Input): void => {
  if (ctx.editor.interactive && input._tag === "line") ctx.out.text([tone("dim", `${input.prompt}${input.text}`)])
}

/** Shows the prompt that says where plain lines go and how many messages are unread. */
export const refreshPrompt = (ctx: Ctx): void => ctx.editor.setPrompt(paint(promptOf(ctx.state), screen.colour()))

/** Asks a question at the prompt; the answer, or undefined at the end of input. */
export const ask = (ctx: Ctx, question: string): Effect.Effect<string | undefined> =>
  Effect.gen(function*() {
    ctx.editor.setPrompt(question)
    const input = yield* ctx.editor.next
    echoTyped(ctx, input)
    refreshPrompt(ctx)
    return input._tag === "line" ? input.text.trim() : input._tag === "paste" ? input.text.trim() : undefined
  })

/** How each send ended, said once: a classic peer's "sent", or why it failed (a delivery is its event's). */
export const report = (ctx: Ctx) => (_to: string, outcome: Outcome<SendResult | GroupSendResult>): Effect.Effect<void> =>
  Effect.sync(() => {
    if (outcome._tag === "failed") return ctx.out.fail(`not delivered: ${outcome.error.message}`)
    const r = outcome.result
    if ("recipients" in r) return reportCopies(ctx, r, "message")
    if (r.state === "sent") {
      ctx.out.result([[tone("dim", "  sent to "), tone("name", r.peer), tone("dim", " (classic peers do not confirm delivery)")]], {
        event: "sent",
        id: r.id,
        to: r.peer,
        mode: r.mode
      })
    }
    if (r.state === "pending") ctx.out.fail(`not sent to ${r.peer} now: the message is kept as pending`)
  })

const FLAG_MODES: Record<string, Mode> = { "--secure": "noise", "--plain": "plain", "--classic": "classic-3des" }

/** The mode the words after `chat USER` ask for: a flag, or the original's secure/unsecure. */
const modeOfWords = (peer: Peer, ws: ReadonlyArray<string>): { readonly mode: Mode | undefined } | { readonly problem: string } => {
  if (ws.length > 1) return { problem: "usage: chat USER [--secure|--plain|--classic]" }
  const w = ws[0]
  if (w === undefined) return { mode: undefined }
  const classic = peer.proto !== "p2pchat/1"
  if (w === "secure") return { mode: classic ? "classic-3des" : "noise" }
  if (w === "unsecure") return { mode: "plain" }
  const mode = FLAG_MODES[w]
  if (mode === undefined) return { problem: "usage: chat USER [--secure|--plain|--classic]" }
  if (mode === "noise" && classic) {
    return { problem: `${peer.username} runs a classic chat program, which has no secure sessions: --classic (NOT secure) or --plain` }
  }
  return { mode }
}

/** Makes `peer` the current conversation in `mode`, and says how its messages go. */
const begin = (ctx: Ctx, peer: Peer, mode: Mode | undefined, answered: boolean) =>
  Effect.gen(function*() {
    const pinned = Option.isSome(yield* ctx.trust.pinned(peer.key).pipe(Effect.orElseSucceed(() => Option.none())))
    const shown: Mode = mode ?? (pinned ? "noise" : peer.proto !== "p2pchat/1" ? "classic-3des" : peer.id !== undefined ? "noise" : "plain")
    ctx.state.current = { name: peer.username, key: peer.key, mode, answered }
    ctx.state.names.set(peer.key, peer.username)
    ctx.state.unread.delete(peer.key)
    ctx.state.warned.clear()
    const warn = (message: string) => {
      ctx.state.warned.add(message)
      ctx.out.warn(message)
    }
    if (shown === "classic-3des") warn(CLASSIC_WARNING)
    if (shown === "plain") warn("unsecure: the messages cross the LAN unencrypted")
    ctx.out.info(`chatting with ${peer.username} (${MODE_WORD[shown]}); plain lines go to ${peer.username}, an empty line ends the conversation`)
    refreshPrompt(ctx)
  })

/** `chat #NAME`: the group is the current conversation; its lines go to its members (secure only). */
const beginGroup = (ctx: Ctx, ref: string, flags: ReadonlyArray<Word>) =>
  Effect.gen(function*() {
    if (flags.some((w) => w.text.toLowerCase() !== "--secure")) return ctx.out.usage("chat #GROUP (a group's messages are secure only)")
    const g = yield* ctx.groups.resolve(ref)
    if (g.leftAt !== undefined) return ctx.out.fail(`you left the group ${g.state.name}`)
    knowGroup(ctx.state, g.state)
    const key = groupConversation(g.state.id)
    ctx.state.current = { name: `#${g.state.name}`, key, mode: "noise", answered: true, group: g.state.id }
    ctx.state.unread.delete(key)
    ctx.state.warned.clear()
    const others = g.state.members.filter((m) => m.key !== ctx.groups.me?.key).map((m) => m.name)
    ctx.out.info(`chatting in #${g.state.name} (secure; ${others.length === 0 ? "no other member" : others.join(", ")}); ` +
      "plain lines go to its members, an empty line ends the conversation")
    refreshPrompt(ctx)
  }).pipe(Effect.catch((e) => Effect.sync(() => ctx.out.fail(e.message))))

/** `chat [USER] [--secure|--plain|--classic]`: asks for USER when not given, as the original did; `chat #NAME`: a group. */
export const chat = (ctx: Ctx, args: ReadonlyArray<Word>) =>
  Effect.gen(function*() {
    const answer = args[0] === undefined ? yield* ask(ctx, "Enter the username: ") : undefined
    // A name typed at the question may have spaces, quoted or not.
    const quoted = answer === undefined ? undefined : words(answer)[0]
    const user = args[0]?.text ?? (quoted?.quoted === true ? quoted.text : answer)
    if (user === undefined || user === "") return
    if (user.startsWith("#")) return yield* beginGroup(ctx, user, args.slice(1))
    const peer = yield* ctx.registry.lookup(user)
    if (Option.isNone(peer)) return ctx.out.fail(`no user '${user}' is online; 'users' lists who is`)
    const chosen = modeOfWords(peer.value, args.slice(1).map((w) => w.text.toLowerCase()))
    if ("problem" in chosen) return chosen.problem.startsWith("usage: ") ? ctx.out.usage(chosen.problem.slice(7)) : ctx.out.fail(chosen.problem)
    yield* begin(ctx, peer.value, chosen.mode, args.length > 1)
  })

/**
 * The first line of a conversation may be the original's answer to "secure or unsecure?":
 * it sets the mode. Whether `input` was that answer.
 */
export const answered = (ctx: Ctx, input: Extract<Input, { readonly _tag: "line" }>) =>
  Effect.gen(function*() {
    const current = ctx.state.current
    if (current === undefined || current.answered) return false
    ctx.state.current = { ...current, answered: true }
    const word = input.text.trim().toLowerCase()
    if (word !== "secure" && word !== "unsecure") return false
    const peer = yield* ctx.registry.lookup(current.name)
    if (Option.isNone(peer)) return false
    const chosen = modeOfWords(peer.value, [word])
    if ("problem" in chosen) return false
    echoTyped(ctx, input)
    yield* begin(ctx, peer.value, chosen.mode, true)
    return true
  })

/** A message to the current conversation. */
export const sayHere = (ctx: Ctx, text: string) =>
  Effect.gen(function*() {
    const current = ctx.state.current
    if (current === undefined) return ctx.out.fail("no conversation: `chat USER` first, or `msg USER TEXT`")
    if (text.trim() === "") return ctx.out.usage("say TEXT")
    echoSent(ctx, current.name, text)
    yield* ctx.sends.send(current.group === undefined ? current.name : groupConversation(current.group), text, current.mode)
  })

/** `msg USER TEXT`: one message, the current conversation unchanged. */
export const msg = (ctx: Ctx, line: string, ws: ReadonlyArray<Word>) =>
  Effect.gen(function*() {
    const user = ws[1]?.text
    const text = restAfter(line, ws, 1)
    if (user === undefined || text.trim() === "") return ctx.out.usage("msg USER TEXT")
    const current = ctx.state.current
    if (user.startsWith("#")) {
      // a group: the message goes to its members (Console.ts sends `#` names to Initiator.group)
      echoSent(ctx, user, text)
      return yield* ctx.sends.send(user, text, undefined)
    }
    const key = usernameKey(user)
    const mode = current !== undefined && current.key === key ? current.mode : undefined
    // answering someone is reading them
    if (ctx.state.unread.delete(key)) refreshPrompt(ctx)
    echoSent(ctx, user, text)
    yield* ctx.sends.send(user, text, mode)
  })

const FALLBACKS: Record<string, Mode> = { "--plain": "plain", "--classic": "classic-3des" }

/** How a broadcast went, once it went: each copy not delivered (the deliveries are their events). */
const reportAll = (ctx: Ctx, r: BroadcastResult) => {
  const lines = r.recipients.filter((c) => c.state !== "delivered")
  if (r.recipients.length === 0) return ctx.out.fail("nobody is online; 'users' lists who is")
  if (ctx.out.json) ctx.out.result([], { event: "broadcast", ...r })
  for (const c of lines) {
    const line = recipientLine(c)
    if (c.state === "pending" || c.state === "failed") ctx.out.fail(line)
    else if (!ctx.out.json) ctx.out.text([tone("dim", `  ${line}`)])
  }
  if (!r.recipients.some((c) => c.state === "delivered" || c.state === "sent" || c.state === "pending" || c.state === "failed")) {
    ctx.out.fail("nobody can be sent to securely; `all --plain TEXT` or `all --classic TEXT` reaches the others")
  }
}

/** `all [--plain|--classic] TEXT`: one message to everyone online, in the background. */
export const all = (ctx: Ctx, line: string, ws: ReadonlyArray<Word>) =>
  Effect.gen(function*() {
    const flag = ws[1] !== undefined && !ws[1].quoted ? FALLBACKS[ws[1].text.toLowerCase()] : undefined
    const text = restAfter(line, ws, flag === undefined ? 0 : 1)
    if (text.trim() === "") return ctx.out.usage("all [--plain|--classic] TEXT")
    echoSent(ctx, ALL, text)
    yield* ctx.sends.track(ctx.initiator.broadcast(text, flag).pipe(
      Effect.match({
        onFailure: (e) => ctx.out.fail(`not sent: ${e.message}`),
        onSuccess: (r) => reportAll(ctx, r)
      })
    ))
  })

/** A paste of several lines: one message to the current conversation, after a yes for a long one. */
export const paste = (ctx: Ctx, pasted: string) =>
  Effect.gen(function*() {
    const text = ctx.editor.typed() + pasted
    const current = ctx.state.current
    if (current === undefined) return ctx.out.fail("a paste of several lines is a message: `chat USER` first, then paste")
    ctx.editor.clearTyped()
    const count = text.split("\n").length
    if (count > PASTE_CONFIRM_LINES) {
      const answer = yield* ask(ctx, `send these ${count} lines to ${current.name} as one message? [y/N] `)
      if (answer === undefined || !/^y(es)?$/i.test(answer)) return ctx.out.info("not sent")
    }
    yield* sayHere(ctx, text)
  })

/** An empty line in a conversation: it is no longer current. */
export const leave = (ctx: Ctx) =>
  Effect.sync(() => {
    const current = ctx.state.current
    if (current === undefined) return
    ctx.state.current = undefined
    ctx.state.warned.clear()
    ctx.out.info(`left the conversation with ${current.name}`)
    refreshPrompt(ctx)
  })
