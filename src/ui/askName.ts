/**
 * `Enter your username: `, asked on a terminal when no name was given (as the original
 * did), until a valid one. Ctrl-C stops the program as Ctrl-C does anywhere (exit 130);
 * Ctrl-D at the empty question leaves without a name (none). Neither prints a stack trace.
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as readline from "node:readline"
import { usernameProblem } from "../domain/Presence.ts"
import { clean } from "../domain/Text.ts"

export const askName: Effect.Effect<Option.Option<string>> = Effect.callback<Option.Option<string>>((resume) => {
  const rl = readline.createInterface({ input: process.stdin, output: process.stdout, terminal: true })
  let done = false
  const finish = (result: Effect.Effect<Option.Option<string>>) => {
    if (done) return
    done = true
    rl.close()
    resume(result)
  }
  rl.on("SIGINT", () => {
    process.stdout.write("\n")
    finish(Effect.interrupt)
  })
  // Ctrl-D at the empty question closes the editor: no name.
  rl.on("close", () => {
    if (!done) process.stdout.write("\n")
    finish(Effect.succeed(Option.none()))
  })
  const question = () =>
    rl.question("Enter your username: ", (answer) => {
      const name = answer.trim()
      const problem = usernameProblem(name)
      if (problem === undefined) return finish(Effect.succeed(Option.some(name)))
      process.stdout.write(`${clean(problem)}\n`)
      question()
    })
  question()
  return Effect.sync(() => {
    done = true
    rl.close()
  })
})
