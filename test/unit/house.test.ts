/**
 * The house size rules for src/: no file over 400 lines, no function over 80 lines.
 *
 * Every src/**\/*.ts file is parsed with @babel/parser (TypeScript plugin; the `typescript`
 * package here is the native build, without a JS API). A function is any function
 * declaration, function expression (generators included, such as the `function*()` bodies
 * of Effect.gen), arrow function, object or class method, getter, setter or constructor; its
 * length runs from its first line to its last, both included, nested functions counted in.
 * One test per file, so a failure names the file and lists each offender in it.
 */
import { parse } from "@babel/parser"
import { readdirSync, readFileSync } from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "vitest"

const MAX_FILE_LINES = 400
const MAX_FUNCTION_LINES = 80

const ROOT = fileURLToPath(new URL("../..", import.meta.url))
const SRC = path.join(ROOT, "src")

interface Node {
  readonly type: string
  readonly loc?: { readonly start: { readonly line: number }; readonly end: { readonly line: number } }
  readonly [key: string]: unknown
}

interface FunctionSize {
  readonly name: string
  readonly line: number
  readonly lines: number
}

const FUNCTION_TYPES = new Set([
  "FunctionDeclaration",
  "FunctionExpression",
  "ArrowFunctionExpression",
  "ObjectMethod",
  "ClassMethod",
  "ClassPrivateMethod"
])

/** Keys that hold no child syntax (positions, comments, cached values). */
const SKIPPED_KEYS = new Set(["loc", "start", "end", "range", "extra", "leadingComments", "trailingComments", "innerComments"])

const isNode = (value: unknown): value is Node =>
  typeof value === "object" && value !== null && typeof (value as { type?: unknown }).type === "string"

/** Lines in a text, the way `wc -l` counts a file that ends with a newline. */
const countLines = (text: string): number => {
  if (text.length === 0) return 0
  const breaks = text.split("\n").length - 1
  return text.endsWith("\n") ? breaks : breaks + 1
}

const keyName = (key: unknown): string | undefined => {
  if (!isNode(key)) return undefined
  if (key.type === "Identifier") return key["name"] as string
  if (key.type === "PrivateName" && isNode(key["id"])) return `#${key["id"]["name"] as string}`
  if (key.type === "StringLiteral" || key.type === "NumericLiteral") return String(key["value"])
  return undefined
}

/** A readable source text for a callee such as `Effect.gen` or `Layer.effect`. */
const calleeName = (callee: unknown): string | undefined => {
  if (!isNode(callee)) return undefined
  if (callee.type === "Identifier") return callee["name"] as string
  if (callee.type === "MemberExpression" && !callee["computed"]) {
    const object = calleeName(callee["object"])
    const property = keyName(callee["property"])
    return object === undefined || property === undefined ? property : `${object}.${property}`
  }
  return undefined
}

/** A name for a function: its own, the binding or key it is stored under, or the call it feeds. */
const functionName = (node: Node, ancestors: ReadonlyArray<Node>): string => {
  const own = keyName(node["id"]) ?? (node.type === "ObjectMethod" || node.type.startsWith("Class") ? keyName(node["key"]) : undefined)
  if (own !== undefined) return node["kind"] === "constructor" ? "constructor" : own
  const parts: Array<string> = []
  for (let i = ancestors.length - 1; i >= 0; i--) {
    const a = ancestors[i]!
    if (a.type === "CallExpression" || a.type === "NewExpression") {
      const callee = calleeName(a["callee"])
      if (callee !== undefined) parts.push(`${callee}(…)`)
      continue
    }
    const bound =
      a.type === "VariableDeclarator"
        ? keyName(a["id"])
        : a.type === "ObjectProperty" || a.type === "ClassProperty" || a.type === "ClassPrivateProperty"
        ? keyName(a["key"])
        : a.type === "AssignmentExpression"
        ? calleeName(a["left"])
        : undefined
    if (bound !== undefined) return [bound, ...parts.reverse()].join(" > ")
    if (FUNCTION_TYPES.has(a.type) || a.type === "Program") break
  }
  return parts.length > 0 ? `<anonymous> in ${parts.reverse().join(" > ")}` : "<anonymous>"
}

/** Every function in a TypeScript source text, with its length in lines. */
const functionSizes = (source: string, fileName = "<source>"): ReadonlyArray<FunctionSize> => {
  const ast = parse(source, { sourceType: "module", sourceFilename: fileName, plugins: ["typescript"] })
  const found: Array<FunctionSize> = []
  const ancestors: Array<Node> = []
  const visit = (node: Node): void => {
    if (FUNCTION_TYPES.has(node.type) && node.loc !== undefined) {
      const line = node.loc.start.line
      found.push({ name: functionName(node, ancestors), line, lines: node.loc.end.line - line + 1 })
    }
    ancestors.push(node)
    for (const [key, value] of Object.entries(node)) {
      if (SKIPPED_KEYS.has(key)) continue
      if (Array.isArray(value)) {
        for (const item of value) if (isNode(item)) visit(item)
      } else if (isNode(value)) {
        visit(value)
      }
    }
    ancestors.pop()
  }
  visit(ast.program as unknown as Node)
  return found
}

const sourceFiles = (dir: string): ReadonlyArray<string> =>
  readdirSync(dir, { withFileTypes: true })
    .flatMap((entry) => {
      const full = path.join(dir, entry.name)
      if (entry.isDirectory()) return sourceFiles(full)
      return entry.isFile() && entry.name.endsWith(".ts") ? [full] : []
    })
    .sort()

/** The rule breaches of one file, one line each; empty when it keeps the rules. */
const breaches = (file: string): ReadonlyArray<string> => {
  const relative = path.relative(ROOT, file)
  const text = readFileSync(file, "utf8")
  const out: Array<string> = []
  const lines = countLines(text)
  if (lines > MAX_FILE_LINES) out.push(`${relative}: file has ${lines} lines (max ${MAX_FILE_LINES})`)
  for (const f of functionSizes(text, relative)) {
    if (f.lines > MAX_FUNCTION_LINES) {
      out.push(`${relative}:${f.line}: function ${f.name} has ${f.lines} lines (max ${MAX_FUNCTION_LINES})`)
    }
  }
  return out
}

describe("the size checker", () => {
  it("measures every kind of function from its first to its last line", () => {
    const source = [
      "export function decl() {", // 1
      "  const arrow = () => {", // 2
      "    return 1", // 3
      "  }", // 4
      "  return arrow", // 5
      "}", // 6
      "const make = Effect.gen(function*() {", // 7
      "  yield* x", // 8
      "})", // 9
      "class A {", // 10
      "  constructor() {}", // 11
      "  #secret(): void {", // 12
      "  }", // 13
      "  get value(): number { return 1 }", // 14
      "}", // 15
      "const o = { m() {", // 16
      "} }" // 17
    ].join("\n")
    const sizes = functionSizes(source).map((f) => `${f.name}@${f.line}:${f.lines}`)
    expect(sizes).toEqual([
      "decl@1:6",
      "arrow@2:3",
      "make > Effect.gen(…)@7:3",
      "constructor@11:1",
      "#secret@12:2",
      "value@14:1",
      "m@16:2"
    ])
  })

  it("counts file lines as wc -l does", () => {
    expect(countLines("")).toBe(0)
    expect(countLines("a\nb\n")).toBe(2)
    expect(countLines("a\nb")).toBe(2)
  })
})

describe(`src/: files up to ${MAX_FILE_LINES} lines, functions up to ${MAX_FUNCTION_LINES}`, () => {
  const files = sourceFiles(SRC)

  it("finds the sources", () => {
    expect(files.length).toBeGreaterThan(0)
  })

  it.each(files.map((file) => [path.relative(ROOT, file), file] as const))("%s", (_relative, file) => {
    const found = breaches(file)
    if (found.length > 0) expect.fail(`size rules broken:\n  ${found.join("\n  ")}`)
  })
})
