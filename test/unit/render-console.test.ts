/**
 * The console's pure parts: the terminal's keys (Ctrl-C, Ctrl-D, bracketed pastes split
 * across reads), the command line (quotes, the conversation's rule, Tab completion), local
 * time (TZ) and the sender's time, colour, the lines of a message of several lines, the
 * prompt, and which log line says what an event line says.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { factOf } from "../../src/ui/ConsoleLog.ts"
import { groupNames, isKnown, knowGroup, makeState, promptOf } from "../../src/ui/context.ts"
import { messageLines } from "../../src/ui/conversation.ts"
import { makeKeyReader, pastedText } from "../../src/ui/keys.ts"
import { columns, rowsOf } from "../../src/ui/LineEditor.ts"
import { complete, parse, quoteName, restAfter, words } from "../../src/ui/parse.ts"
import { conversationLine, eventLine, historyLine, historyLines, messageHead, recipientLine, textLine } from "../../src/ui/render.ts"
import { colourWanted, nameColour, paint, plain, tone } from "../../src/ui/style.ts"
import { clock, dayLine, parseTime, sentNote, stamp, zone } from "../../src/ui/time.ts"

describe("the terminal's keys", () => {
  it("takes Ctrl-C and Ctrl-D out of typed text, and gives the rest as it came", () => {
    const read = makeKeyReader()
    expect(read("ab\x03c\x04\x1b[D")).toEqual([
      { _tag: "text", text: "ab" },
      { _tag: "ctrl-c" },
      { _tag: "text", text: "c" },
      { _tag: "ctrl-d" },
      { _tag: "text", text: "\x1b[D" }
    ])
  })

  it("gives a bracketed paste whole, even split across reads, markers included; Ctrl-C inside it is text", () => {
    const read = makeKeyReader()
    expect(read("x\x1b[20")).toEqual([{ _tag: "text", text: "x" }])
    expect(read("0~line 1\r\x03")).toEqual([])
    expect(read("\rline 3\x1b[2")).toEqual([])
    expect(read("01~y")).toEqual([{ _tag: "paste", text: "line 1\r\x03\rline 3" }, { _tag: "text", text: "y" }])
  })

  it("a paste's line breaks are \\n, without the trailing ones", () => {
    expect(pastedText("a\r\rb\r\nc\r\r")).toBe("a\n\nb\nc")
  })
})

describe("the command line", () => {
  const known = (name: string) => ["bob", "carol", "mary jane"].includes(name.toLowerCase())

  it("splits words at spaces, keeps quoted names whole, and the rest of the line as typed", () => {
    const line = `msg "Mary Jane"  hello   there`
    const ws = words(line)
    expect(ws.map((w) => w.text)).toEqual(["msg", "Mary Jane", "hello", "there"])
    expect(restAfter(line, ws, 1)).toBe(" hello   there")
    expect(words(`trust 'Mary Jane' 123`).map((w) => w.text)).toEqual(["trust", "Mary Jane", "123"])
    expect(words(`say "a \\"b\\""`).map((w) => w.text)).toEqual(["say", "a \"b\""])
    expect(quoteName("Mary Jane")).toBe("\"Mary Jane\"")
    expect(quoteName("bob")).toBe("bob")
  })

  it("without a conversation, every line is a command, with or without its slash", () => {
    expect(parse("users", false, known)).toMatchObject({ _tag: "command", name: "users" })
    expect(parse("/USERS", false, known)).toMatchObject({ _tag: "command", name: "users" })
    expect(parse("hello bob", false, known)).toEqual({ _tag: "unknown", word: "hello" })
    expect(parse("/nope", false, known)).toEqual({ _tag: "unknown", word: "/nope" })
    expect(parse("  ", false, known)).toEqual({ _tag: "empty" })
  })

  it("in a conversation, a line is a message unless it starts with / or is exactly a command", () => {
    const text = (line: string) => ({ _tag: "text", text: line })
    expect(parse("quit", true, known)).toMatchObject({ _tag: "command", name: "quit" })
    expect(parse("history", true, known)).toMatchObject({ _tag: "command", name: "history" })
    expect(parse("history carol", true, known)).toMatchObject({ _tag: "command", name: "history" })
    expect(parse("history --all", true, known)).toMatchObject({ _tag: "command", name: "history" })
    expect(parse("msg carol hi there", true, known)).toMatchObject({ _tag: "command", name: "msg" })
    expect(parse("/help", true, known)).toMatchObject({ _tag: "command", name: "help" })
    expect(parse("help me please", true, known)).toEqual(text("help me please"))
    expect(parse("history of the war", true, known)).toEqual(text("history of the war"))
    expect(parse("msg me later", true, known)).toEqual(text("msg me later"))
    expect(parse("chat soon!", true, known)).toEqual(text("chat soon!"))
    expect(parse("//quit", true, known)).toEqual(text("/quit"))
    expect(parse("hello", true, known)).toEqual(text("hello"))
  })

  it("Tab completes commands, names (quoted when they hold a space) and chat's mode flags", () => {
    const names = ["bob", "Mary Jane"]
    expect(complete("ch", names, false)).toEqual([["chat "], "ch"])
    expect(complete("/ch", names, false)).toEqual([["/chat "], "/ch"])
    expect(complete("chat b", names, false)).toEqual([["bob "], "b"])
    expect(complete("msg m", names, false)).toEqual([["\"Mary Jane\" "], "m"])
    expect(complete("chat bob --p", names, false)).toEqual([["--plain"], "--p"])
    expect(complete("hi b", names, true)).toEqual([["bob"], "b"])
  })
})

describe("time, in the local zone (TZ)", () => {
  const saved = process.env["TZ"]
  beforeAll(() => void (process.env["TZ"] = "Asia/Tokyo"))
  afterAll(() => void (saved === undefined ? delete process.env["TZ"] : (process.env["TZ"] = saved)))

  const at = "2026-12-01T12:15:26.000Z" // 21:15:26 in Tokyo
  const message = { event: "message" as const, id: "1", from: "bob", text: "hi", mode: "noise", at }

  it("clock, day, stamp, zone and the day line are local", () => {
    const d = new Date(at)
    expect(clock(d)).toBe("21:15:26")
    expect(stamp(d)).toBe("2026-12-01 21:15:26")
    expect(zone(d)).toBe("UTC+09:00")
    expect(dayLine(new Date("2026-12-01T15:30:00Z"))).toBe("--- Wednesday 2026-12-02 ---")
    expect(parseTime("not a time")).toBeUndefined()
    expect(parseTime("")).toBeUndefined()
  })

  it("a message line shows the arrival in local time, and the sender's time when more than a minute apart", () => {
    expect(textLine(message)).toBe("[21:15:26] bob: hi")
    expect(textLine({ ...message, sentAt: "2026-12-01T12:14:40.000Z" })).toBe("[21:15:26] bob: hi")
    expect(textLine({ ...message, sentAt: "2026-12-01T12:01:00.000Z" })).toBe("[21:15:26, sent 21:01:00] bob: hi")
    expect(textLine({ ...message, sentAt: "2026-11-30T12:01:00.000Z" })).toBe("[21:15:26, sent 2026-11-30 21:01:00] bob: hi")
    expect(textLine({ ...message, sentAt: "garbage" })).toBe("[21:15:26] bob: hi")
    expect(sentNote(new Date(at), undefined)).toBeUndefined()
  })

  it("history lines are local", () => {
    const entry = { id: "1", peer: "bob", direction: "received" as const, text: "hi", at, mode: "plain" as const, state: "received" as const }
    expect(historyLine(entry)).toBe("[2026-12-01 21:15:26] bob: hi [unencrypted]")
    // the console shows each further line of a text marked, as it shows a message
    expect(historyLines({ ...entry, text: "a\nb" }).map(plain)).toEqual(["[2026-12-01 21:15:26] bob: a [unencrypted]", "  | b"])
  })
})

describe("colour and lines", () => {
  it("colours only on a terminal without NO_COLOR, and not on a dumb one", () => {
    expect(colourWanted({ isTTY: true }, {})).toBe(true)
    expect(colourWanted({ isTTY: false }, {})).toBe(false)
    expect(colourWanted({ isTTY: true }, { NO_COLOR: "1" })).toBe(false)
    expect(colourWanted({ isTTY: true }, { NO_COLOR: "" })).toBe(true)
    expect(colourWanted({ isTTY: true }, { TERM: "dumb" })).toBe(false)
  })

  it("paints each segment cleaned, with codes only from here; a name always has its colour", () => {
    const line = ["* ", tone("name", "bo\x1b[31mb"), tone("warn", "! x\u202e")]
    expect(paint(line, false)).toBe("* bo\\u001b[31mb! x\\u202e")
    const coloured = paint(line, true)
    expect(coloured).toBe(`* \x1b[${nameColour("bo\x1b[31mb")}mbo\\u001b[31mb\x1b[0m\x1b[33m! x\\u202e\x1b[0m`)
    expect(nameColour("Bob")).toBe(nameColour("bob"))
    expect(plain(eventLine({ event: "delivered", id: "1", to: "bob" }))).toBe("  delivered to bob")
  })

  it("a message of several lines: each further line marked, so none passes for a line of its own", () => {
    const e = { event: "message" as const, id: "1", from: "bob", text: "a\n[12:00:00] alice: forged\r\nc", mode: "plain", at: "2026-12-01T12:15:26.000Z" }
    const lines = messageLines(messageHead(e), e.text).map(plain)
    expect(lines).toHaveLength(3)
    expect(lines[0]).toMatch(/^\[\d\d:\d\d:\d\d\] bob \(unencrypted\): a$/)
    expect(lines.slice(1)).toEqual(["  | [12:00:00] alice: forged", "  | c"])
  })

  it("the prompt says where plain lines go and how many messages are unread", () => {
    const state = makeState()
    expect(plain(promptOf(state))).toBe("> ")
    state.current = { name: "bob", key: "bob", mode: undefined, answered: true }
    state.unread.set("carol", { name: "carol", count: 2 })
    expect(plain(promptOf(state))).toBe("[bob] (2 unread) > ")
  })

  it("measures what the terminal shows: wide characters two columns, escapes none", () => {
    expect(columns("> \x1b[1mab\x1b[0m")).toBe(4)
    expect(columns("你好")).toBe(4)
    expect(columns("e\u0301")).toBe(1)
    expect(rowsOf("x".repeat(81), 80)).toBe(2)
    expect(rowsOf("x".repeat(80), 80)).toBe(1)
    expect(rowsOf("x".repeat(200), 0)).toBe(1)
  })
})

describe("each fact once: a log line and the event line saying the same", () => {
  it("match without the role and the address:port", () => {
    expect(factOf("responder: secure session from bob (127.0.0.1:40000), fingerprint 1 2")).toBe(
      factOf("secure session from bob, fingerprint 1 2")
    )
    expect(factOf("initiator: bob has a pinned key")).toBe("bob has a pinned key")
  })
})

describe("groups on the console", () => {
  const state = makeState()
  knowGroup(state, { id: "q3xYb2mJ0V8kPq1cR7tU9w", name: "team" })
  state.names.set("bob", "bob")
  const known = (name: string) => isKnown(state, name)

  it("a #NAME is known by its name or id; msg, chat, history and group with a known group are commands in a conversation", () => {
    expect([known("#team"), known("#TEAM"), known("#q3xYb2mJ0V8kPq1cR7tU9w"), known("#other"), known("team")]).toEqual([true, true, true, false, false])
    expect(parse("msg #team hi", true, known)).toMatchObject({ _tag: "command", name: "msg" })
    expect(parse("history #team", true, known)).toMatchObject({ _tag: "command", name: "history" })
    expect(parse("msg #other hi", true, known)).toEqual({ _tag: "text", text: "msg #other hi" })
    expect(parse("group", true, known)).toMatchObject({ _tag: "command", name: "group" })
    expect(parse("group list", true, known)).toMatchObject({ _tag: "command", name: "group" })
    expect(parse("group show team", true, known)).toMatchObject({ _tag: "command", name: "group" })
    expect(parse("group create team bob", true, known)).toEqual({ _tag: "text", text: "group create team bob" })
    expect(parse("group list of things", true, known)).toEqual({ _tag: "text", text: "group list of things" })
    expect(parse("group create team bob", false, known)).toMatchObject({ _tag: "command", name: "group" })
  })

  it("Tab completes #names, group's subcommands, its groups, then users", () => {
    const names = ["bob", "Mary Jane", ...groupNames(state)]
    expect(complete("msg #t", names, false)).toEqual([["#team "], "#t"])
    expect(complete("chat #", names, false)).toEqual([["#team "], "#"])
    expect(complete("gr", names, false)).toEqual([["group "], "gr"])
    expect(complete("group s", names, false)).toEqual([["show "], "s"])
    expect(complete("group show t", names, false)).toEqual([["#team "], "t"])
    expect(complete("group add #team M", names, false)).toEqual([["\"Mary Jane\" "], "M"])
    expect(complete("group create x ", names, false)[0]).toEqual(["bob ", "\"Mary Jane\" "])
  })

  it("a group's message line says the group; its history gives each message once, with members' states", () => {
    const e = { event: "message", id: "1", from: "bob", text: "hi", mode: "noise", at: "2026-12-01T12:00:00.000Z", to: "#q3xYb2mJ0V8kPq1cR7tU9w", group: "team" } as const
    expect(plain(messageHead(e))).toMatch(/^\[\d\d:\d\d:\d\d\] bob in #team: $/)
    const sent = {
      id: "2", conversation: "#q3xYb2mJ0V8kPq1cR7tU9w", direction: "sent", text: "lunch?", at: "2026-12-01T12:00:00.000Z",
      recipients: [{ peer: "bob", mode: "noise", state: "delivered" }, { peer: "carol", mode: "noise", state: "pending" }]
    } as const
    expect(conversationLine(sent, "team")).toMatch(/\] me -> #team: lunch\? \(delivered to bob; pending for carol\)$/)
    const got = { id: "3", peer: "bob", direction: "received", text: "yes", at: sent.at, mode: "noise", state: "received", conversation: sent.conversation } as const
    expect(conversationLine(got, "team")).toMatch(/\] bob in #team: yes$/)
    // in a peer's history, a copy of a group message says it was the group's
    expect(historyLine({ ...got, direction: "sent", state: "delivered", peer: "bob", text: "x" })).toMatch(/me -> bob in #q3xYb2mJ0V8kPq1cR7tU9w: x \(delivered\)$/)
  })

  it("a copy its member refused: said as refused by that member, with why, never as delivered", () => {
    const sent = {
      id: "2", conversation: "#q3xYb2mJ0V8kPq1cR7tU9w", direction: "sent", text: "lunch?", at: "2026-12-01T12:00:00.000Z",
      recipients: [
        { peer: "bob", mode: "noise", state: "refused", refused: "not-a-member" },
        { peer: "carol", mode: "noise", state: "delivered" },
        { peer: "dave", mode: "noise", state: "refused", refused: "left" },
        { peer: "erin", mode: "noise", state: "refused", refused: "not-a-member" }
      ]
    } as const
    expect(conversationLine(sent, "team")).toMatch(
      /\] me -> #team: lunch\? \(delivered to carol; refused by bob, erin \(you are not a member of the group in their list\); refused by dave \(they left the group\)\)$/
    )
    const copy = { ...sent.recipients[0], id: "2", direction: "sent", text: "x", at: sent.at, conversation: sent.conversation } as const
    expect(historyLine(copy)).toMatch(/me -> bob in #q3xYb2mJ0V8kPq1cR7tU9w: x \(refused: you are not a member of the group in their list\)$/)
    // a code this version does not know is shown as it came
    expect(historyLine({ ...copy, refused: "later-code" })).toMatch(/\(refused: later-code\)$/)
    expect(recipientLine({ peer: "bob", mode: "noise", state: "refused", reason: "they left the group", refused: "left" }))
      .toBe("refused by bob: they left the group")
  })
})
