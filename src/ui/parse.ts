/**
 * What a console line says: a command (with or without its slash), or text for the current
 * conversation. Words are split at spaces; a name with spaces is quoted (`msg "Mary Jane"
 * hi`, or 'Mary Jane'; a backslash keeps the next character inside double quotes).
 *
 * Without a current conversation every line is a command, as in the original. In a
 * conversation a line is text for the peer unless it starts with `/` (`//` sends a line
 * that starts with one slash), or is exactly a command with its arguments: a word alone
 * (`quit`, `history`, `users`), a word and a known name (`history carol`, `msg carol hi`,
 * `file carol a.pdf`), or `accept`/`decline` and an offer's id (`accept 3f2a1b2c`).
 */
import { ALL } from "../domain/Conversation.ts"

/** A word of the line, and where it ends (the rest of the line after it is kept as typed). */
export interface Word {
  readonly text: string
  readonly end: number
  /** Whether it was quoted (a quoted word is never a flag). */
  readonly quoted: boolean
}

/** The words of a line; an unclosed quote runs to the end of the line. */
export const words = (line: string): ReadonlyArray<Word> => {
  const out: Array<Word> = []
  let i = 0
  while (i < line.length) {
    while (i < line.length && /\s/.test(line[i]!)) i++
    if (i >= line.length) break
    let text = ""
    let quoted = false
    while (i < line.length && !/\s/.test(line[i]!)) {
      const q = line[i]!
      if (q !== "\"" && q !== "'") {
        text += q
        i++
        continue
      }
      quoted = true
      i++
      while (i < line.length && line[i] !== q) {
        if (q === "\"" && line[i] === "\\" && i + 1 < line.length) i++
        text += line[i]!
        i++
      }
      i++ // the closing quote
    }
    out.push({ text, end: Math.min(i, line.length), quoted })
  }
  return out
}

/** The text after word `n` as typed (one separating space dropped), or "" when none. */
export const restAfter = (line: string, ws: ReadonlyArray<Word>, n: number): string => {
  const w = ws[n]
  return w === undefined ? "" : line.slice(w.end).replace(/^\s/, "")
}

/** The commands, with the arguments each takes (for the help, completion and the conversation rule). */
export const COMMANDS = {
  users: { args: "", help: "who is on the LAN, with status" },
  chat: { args: "[USER | #GROUP] [--secure|--plain|--classic]", help: "make USER (or a group) the current conversation: plain lines go there" },
  msg: { args: "USER|#GROUP TEXT", help: "send one message to USER (secure when the peer can), or to a group's members" },
  say: { args: "TEXT", help: "send TEXT to the current conversation, even if it looks like a command" },
  all: { args: "[--plain|--classic] TEXT", help: "send TEXT to everyone online (secure; a flag also reaches the others)" },
  history: { args: "[USER | #GROUP | *all* | --all]", help: "the conversation with USER, else the current one, else all; *all*: the broadcasts" },
  group: { args: "[list|show|create|add|remove|leave] ...", help: "groups: list, show NAME, create NAME [USER...], add/remove NAME USER..., leave NAME" },
  file: { args: "USER|#GROUP PATH...", help: "offer files or folders to USER or a group's members (Tab completes paths)" },
  accept: { args: "ID", help: "take a file offered to you (the first 8 characters of its id are enough)" },
  decline: { args: "ID", help: "refuse a file offered to you" },
  files: { args: "", help: "the file transfers, in and out, with their state" },
  away: { args: "", help: "tell the others you are away" },
  back: { args: "", help: "tell the others you are back" },
  whoami: { args: "", help: "your name, fingerprint, ports and data dir" },
  verify: { args: "USER", help: "your fingerprint and USER's, to compare aloud" },
  trust: { args: "USER [FINGERPRINT]", help: "accept USER's key with the fingerprint you compared (alone: shows them)" },
  help: { args: "", help: "this list" },
  quit: { args: "", help: "leave (also exit, Ctrl-D)" },
  exit: { args: "", help: "" }
} as const

export type CommandName = keyof typeof COMMANDS

const isCommand = (w: string): w is CommandName => Object.hasOwn(COMMANDS, w)

/** Commands that take no argument: alone on a line in a conversation, they are commands. */
const BARE = new Set<CommandName>(["users", "away", "back", "whoami", "help", "quit", "exit", "history", "group", "files"])
/** The words after `group`. */
export const GROUP_SUBCOMMANDS = ["list", "show", "create", "add", "remove", "leave"] as const
/** Whether `group ...` in a conversation is the command: `group list`, or a subcommand and a known group (`group show #team`). */
const groupLine = (ws: ReadonlyArray<Word>, known: (name: string) => boolean): boolean => {
  const sub = ws[1]?.text.toLowerCase()
  if (sub === "list") return ws.length === 2
  const name = ws[2]?.text
  return sub !== "create" && (GROUP_SUBCOMMANDS as ReadonlyArray<string>).includes(sub ?? "") && name !== undefined &&
    known(name.startsWith("#") ? name : `#${name}`)
}
/** Commands whose first argument is a name: with a known name, they are commands in a conversation. */
const NAMED = new Set<CommandName>(["chat", "msg", "history", "verify", "trust", "file"])

export type Parsed =
  | { readonly _tag: "empty" }
  | { readonly _tag: "text"; readonly text: string }
  | { readonly _tag: "command"; readonly name: CommandName; readonly args: ReadonlyArray<Word>; readonly line: string; readonly ws: ReadonlyArray<Word> }
  | { readonly _tag: "unknown"; readonly word: string }

/**
 * What `line` says. `inConversation`: whether a conversation is current; `known`: whether
 * a name is one the console knows (a peer heard, or a conversation).
 */
export const parse = (line: string, inConversation: boolean, known: (name: string) => boolean): Parsed => {
  if (line.trim() === "") return { _tag: "empty" }
  if (inConversation && line.startsWith("//")) return { _tag: "text", text: line.slice(1) }
  const slash = line.trimStart().startsWith("/")
  const ws = words(slash ? line.trimStart().slice(1) : line)
  const body = slash ? line.trimStart().slice(1) : line
  const first = ws[0]
  const word = first === undefined || first.quoted ? "" : first.text.toLowerCase()
  const command = (name: CommandName): Parsed => ({ _tag: "command", name, args: ws.slice(1), line: body, ws })
  if (slash || !inConversation) return isCommand(word) ? command(word) : { _tag: "unknown", word: `${slash ? "/" : ""}${first?.text ?? ""}` }
  if (!isCommand(word)) return { _tag: "text", text: line }
  if (ws.length === 1 && BARE.has(word)) return command(word)
  const name = ws[1]
  if (word === "history" && ws.length === 2 && (name?.text === "--all" || name?.text === ALL)) return command(word)
  if (word === "group") return groupLine(ws, known) ? command(word) : { _tag: "text", text: line }
  // `accept 3f2a1b2c`: an offer's id (hex, 4 characters at least) alone after the word
  if ((word === "accept" || word === "decline") && ws.length === 2 && /^[0-9a-f]{4,}(-[0-9a-f-]*)?$/i.test(name!.text)) return command(word)
  if (NAMED.has(word) && name !== undefined && known(name.text)) {
    if (word === "history" || word === "verify") return ws.length === 2 ? command(word) : { _tag: "text", text: line }
    return command(word)
  }
  return { _tag: "text", text: line }
}

/** A name as typed on a command line: quoted when it holds a space or a quote. */
export const quoteName = (name: string): string => /[\s"'\\]/.test(name) ? `"${name.replace(/["\\]/g, "\\$&")}"` : name

const FLAGS = ["--secure", "--plain", "--classic"] as const

/** After `group`: its subcommands, then a group's `#NAME`, then (add, remove, create) users. */
const groupCompletions = (sub: string, index: number, current: string, names: ReadonlyArray<string>): ReadonlyArray<string> => {
  const typed = current.replace(/^["']/, "").toLowerCase()
  const hits = (candidates: ReadonlyArray<string>) =>
    candidates.filter((c) => c.toLowerCase().startsWith(typed) || (c.startsWith("#") && c.slice(1).toLowerCase().startsWith(typed)))
  if (index === 1) return hits(GROUP_SUBCOMMANDS)
  const groups = names.filter((n) => n.startsWith("#"))
  if (index === 2 && sub !== "create" && sub !== "list") return hits(groups)
  if (index >= 3 && (sub === "add" || sub === "remove" || sub === "create")) return hits(names.filter((n) => !n.startsWith("#"))).map(quoteName)
  return []
}

/**
 * Tab completion (readline's completer): commands at the start of a line, names where a
 * command takes one (`names` holds groups as `#NAME`), the mode flags after `chat USER`,
 * `group`'s subcommands and groups, paths after `file USER` (`paths`: the candidates for what
 * is typed), and in a conversation a name for the word being typed.
 * Gives the candidates and the part of the line they replace.
 */
export const complete = (
  line: string,
  names: ReadonlyArray<string>,
  inConversation: boolean,
  paths: (typed: string) => Array<string> = () => []
): [Array<string>, string] => {
  const slash = line.startsWith("/")
  const ws = words(slash ? line.slice(1) : line)
  const endsInSpace = line === "" || /\s$/.test(line)
  const current = endsInSpace ? "" : line.slice(line.search(/\S+$/))
  const index = endsInSpace ? ws.length : ws.length - 1
  const byPrefix = (candidates: ReadonlyArray<string>, typed: string) =>
    candidates.filter((c) => c.toLowerCase().startsWith(typed.toLowerCase()))
  // a name is typed with or without its opening quote, and completed quoted when it needs it
  const namesFor = (typed: string) => byPrefix(names, typed.replace(/^["']/, "")).map(quoteName)
  if (index === 0) {
    const commands = Object.keys(COMMANDS).filter((c) => c !== "exit").map((c) => `${slash ? "/" : ""}${c} `)
    const hits = byPrefix(commands, current)
    if (slash || !inConversation) return [hits, current]
    return [[...hits, ...namesFor(current)], current]
  }
  const word = ws[0]?.text.toLowerCase() ?? ""
  const commandLike = slash || !inConversation || (isCommand(word) && index <= 1)
  if (commandLike && isCommand(word)) {
    if (index === 1 && word === "history") return [[...namesFor(current), ...byPrefix([ALL], current)].map((n) => `${n} `), current]
    if (index === 1 && NAMED.has(word)) return [namesFor(current).map((n) => `${n} `), current]
    if (index === 1 && word === "all") return [byPrefix(["--plain", "--classic"], current), current]
    if (word === "group") return [groupCompletions(ws[1]?.text.toLowerCase() ?? "", index, current, names).map((n) => `${n} `), current]
    if (index >= 2 && word === "chat") return [byPrefix(FLAGS, current), current]
    if (index >= 2 && word === "file") return [paths(current), current]
    return [[], current]
  }
  return [namesFor(current), current]
}
