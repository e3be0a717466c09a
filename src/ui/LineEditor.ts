/**
 * Where the console's lines come from. On a terminal: Node's line editor (editing, history,
 * Tab completion) fed through `keys.ts`, which takes Ctrl-C, Ctrl-D and bracketed pastes for
 * the console; the terminal is in raw mode with bracketed paste on, both undone when the
 * console ends (or the process exits). Otherwise: one line at a time, without prompts.
 *
 *   Ctrl-C   clears the line being typed; at an empty line, prints how to leave
 *   Ctrl-D   at an empty line: the end of input (the console leaves); else deletes a character
 *   paste    one line: into the line being typed; several: one input of its own
 */
import * as Effect from "effect/Effect"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import * as readline from "node:readline"
import { EventEmitter } from "node:events"
import { stripVTControlCharacters } from "node:util"
import { makeKeyReader, PASTE_OFF, PASTE_ON, pastedText } from "./keys.ts"
import { screen } from "./Screen.ts"
import { columns, type Line } from "./style.ts"

export type Input =
  /** `prompt`: the prompt it was typed at, without colour. */
  | { readonly _tag: "line"; readonly text: string; readonly prompt: string }
  | { readonly _tag: "paste"; readonly text: string }
  | { readonly _tag: "end" }

export interface Editor {
  /** Whether it edits on a terminal (prompts, colour, echo). */
  readonly interactive: boolean
  readonly next: Effect.Effect<Input>
  /** The prompt; shown at once when it changes. */
  readonly setPrompt: (prompt: string) => void
  /** What is typed on the line now, and clearing it (a paste of several lines takes it along). */
  readonly typed: () => string
  readonly clearTyped: () => void
}

export interface EditorOptions {
  readonly completer: (line: string) => [Array<string>, string]
  /** What Ctrl-C at an empty line prints. */
  readonly hint: () => Line
}

export { columns }

/** Rows a prompt and its line took on a terminal `width` columns wide (0 or unknown: one row, as the editor sees it). */
export const rowsOf = (text: string, width: number | undefined): number =>
  width === undefined || width <= 0 ? 1 : Math.max(1, Math.ceil(columns(text) / width))

/** What a one-line paste puts into the line being typed: no control character (a tab is a space). */
// eslint-disable-next-line no-control-regex
const insertable = (text: string): string => text.replace(/\t/g, " ").replace(/[\u0000-\u001f\u007f-\u009f]/g, "")

/** The next input; once the input has ended, the end again each time it is asked for. */
const nextOf = (inputs: Queue.Queue<Input>): Effect.Effect<Input> =>
  Effect.tap(Queue.take(inputs), (input) => input._tag === "end" ? Queue.offer(inputs, input) : Effect.void)

const lines = (): Effect.Effect<Editor, never, Scope.Scope> =>
  Effect.gen(function*() {
    const inputs = yield* Queue.unbounded<Input>()
    yield* Effect.acquireRelease(
      Effect.sync(() => {
        const rl = readline.createInterface({ input: process.stdin, terminal: false, crlfDelay: Infinity })
        rl.on("line", (text) => Queue.offerUnsafe(inputs, { _tag: "line", text, prompt: "" }))
        rl.on("close", () => Queue.offerUnsafe(inputs, { _tag: "end" }))
        return rl
      }),
      (rl) => Effect.sync(() => rl.close())
    )
    return { interactive: false, next: nextOf(inputs), setPrompt: () => {}, typed: () => "", clearTyped: () => {} }
  })

/** Node's line editor on stdout, fed synchronously (what it holds is then current), and the screen's prompt. */
const editorOn = (out: NodeJS.WriteStream, options: EditorOptions) => {
  // (The editor uses only `on`, `resume` and `pause` of its input stream.)
  const input = Object.assign(new EventEmitter(), { resume: () => input, pause: () => input }) as unknown as NodeJS.ReadableStream
  const feed = (text: string) => void input.emit("data", Buffer.from(text, "utf8"))
  const rl = readline.createInterface({ input, output: out, terminal: true, completer: options.completer, historySize: 500, prompt: "" })
  const prompt = {
    hide: () => {
      readline.moveCursor(out, 0, -rl.getCursorPos().rows)
      readline.cursorTo(out, 0)
      readline.clearScreenDown(out)
    },
    show: () => {
      // The prompt starts on this new row: the editor must not move up to where it was.
      const state = rl as unknown as { prevRows?: number }
      if (typeof state.prevRows === "number") state.prevRows = 0
      rl.prompt(true)
    }
  }
  return { rl, feed, prompt }
}

/** What each key the terminal sent does (keys.ts): to the editor, or an input of the console's. */
const keyHandler = (editor: ReturnType<typeof editorOn>, inputs: Queue.Queue<Input>, options: EditorOptions) => {
  const { feed, rl } = editor
  const keys = makeKeyReader()
  return (chunk: string) => {
    for (const key of keys(chunk)) {
      if (key._tag === "text") feed(key.text)
      else if (key._tag === "ctrl-c") rl.line === "" ? screen.print(options.hint()) : feed("\x05\x15")
      else if (key._tag === "ctrl-d") rl.line === "" ? Queue.offerUnsafe(inputs, { _tag: "end" }) : feed("\x04")
      else {
        const text = pastedText(key.text)
        if (text.includes("\n")) Queue.offerUnsafe(inputs, { _tag: "paste", text })
        else rl.write(insertable(text))
      }
    }
  }
}

const terminal = (options: EditorOptions): Effect.Effect<Editor, never, Scope.Scope> =>
  Effect.gen(function*() {
    const inputs = yield* Queue.unbounded<Input>()
    const out = process.stdout
    const editor = editorOn(out, options)
    const { feed, prompt, rl } = editor
    rl.on("line", (text) => {
      // The submitted line leaves the screen; the console prints what it became.
      const shown = stripVTControlCharacters(rl.getPrompt())
      readline.moveCursor(out, 0, -rowsOf(shown + text, out.columns))
      readline.clearScreenDown(out)
      prompt.show()
      Queue.offerUnsafe(inputs, { _tag: "line", text, prompt: shown })
    })
    const onData = keyHandler(editor, inputs, options)
    const onEnd = () => Queue.offerUnsafe(inputs, { _tag: "end" })
    const restore = () => {
      out.write(PASTE_OFF)
      if (process.stdin.isTTY === true) process.stdin.setRawMode(false)
    }
    yield* Effect.acquireRelease(
      Effect.sync(() => {
        process.stdin.setEncoding("utf8")
        process.stdin.setRawMode(true)
        process.stdin.on("data", onData)
        process.stdin.on("end", onEnd)
        process.stdin.resume()
        process.once("exit", restore)
        out.write(PASTE_ON)
        screen.attach(prompt)
        prompt.show()
      }),
      () =>
        Effect.sync(() => {
          screen.attach(undefined)
          prompt.hide()
          rl.close()
          process.stdin.off("data", onData)
          process.stdin.off("end", onEnd)
          process.stdin.pause()
          process.off("exit", restore)
          restore()
        })
    )
    return {
      interactive: true,
      next: nextOf(inputs),
      setPrompt: (p) => {
        if (p === rl.getPrompt()) return
        prompt.hide()
        rl.setPrompt(p)
        prompt.show()
      },
      typed: () => rl.line,
      clearTyped: () => feed("\x05\x15")
    }
  })

/** The console's input: a line editor on a terminal (`interactive`), lines otherwise. */
export const makeEditor = (interactive: boolean, options: EditorOptions): Effect.Effect<Editor, never, Scope.Scope> =>
  interactive ? terminal(options) : lines()
