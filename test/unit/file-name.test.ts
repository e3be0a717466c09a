/**
 * Names from the network (src/domain/FileName.ts): never a path, never a device, never too
 * long, never an existing file.
 */
import { describe, expect, it } from "vitest"
import { freeName, MAX_NAME_BYTES, numberedName, safeName, safeParts, sizeText, withSuffix } from "../../src/domain/FileName.ts"

describe("safeName", () => {
  it.each([
    ["report.pdf", "report.pdf"],
    ["../../etc/passwd", ".._.._etc_passwd"],
    ["/etc/passwd", "_etc_passwd"],
    ["C:\\x", "C__x"],
    ["a\\b", "a_b"],
    ["..", "file"],
    [".", "file"],
    ["", "file"],
    ["   ", "file"],
    ["name. . ", "name"],
    ["a\u0000b\nc\u007fd\u009b.txt", "a_b_c_d_.txt"],
    ["photo\u202egpj.exe", "photo_gpj.exe"],
    ["what?<>|*\".txt", "what______.txt"],
    ["con", "_con"],
    ["CON", "_CON"],
    ["nul.txt", "_nul.txt"],
    ["Com1.tar.gz", "_Com1.tar.gz"],
    ["lpt9", "_lpt9"],
    ["console", "console"],
    ["com10", "com10"],
    [".bashrc", ".bashrc"]
  ])("%j -> %j", (given, safe) => {
    expect(safeName(given)).toBe(safe)
  })

  it("shortens a long name to 255 UTF-8 bytes, keeping the extension", () => {
    const s = safeName("x".repeat(300) + ".txt")
    expect(Buffer.byteLength(s)).toBe(MAX_NAME_BYTES)
    expect(s.endsWith(".txt")).toBe(true)
    const wide = safeName("é".repeat(200) + ".pdf") // 2 bytes each: whole characters only
    expect(Buffer.byteLength(wide)).toBeLessThanOrEqual(MAX_NAME_BYTES)
    expect(wide).toMatch(/^é+\.pdf$/)
    expect(safeName("y".repeat(255))).toBe("y".repeat(255))
  })

  it("never gives a separator, a control character or a dot-only name (random input)", () => {
    for (let n = 0; n < 2000; n++) {
      const chars = Array.from({ length: 1 + (n % 40) }, (_, i) => String.fromCharCode((n * 7919 + i * 104729) % 0x3000))
      const s = safeName(chars.join(""))
      expect(s).not.toMatch(/[/\\\u0000-\u001f]/)
      expect(s).not.toMatch(/^\.+$/)
      expect(s).not.toMatch(/[. ]$/)
      expect(Buffer.byteLength(s)).toBeLessThanOrEqual(MAX_NAME_BYTES)
      expect(s.length).toBeGreaterThan(0)
    }
  })
})

describe("safeParts", () => {
  it.each([
    ["a/b/c.txt", ["a", "b", "c.txt"]],
    ["../../etc/passwd", ["etc", "passwd"]],
    ["/abs/x", ["abs", "x"]],
    ["a/./b//c", ["a", "b", "c"]],
    ["C:\\Windows\\y", ["C__Windows_y"]],
    ["..", ["file"]],
    ["", ["file"]]
  ])("%j -> %j", (given, parts) => {
    expect(safeParts(given)).toEqual(parts)
  })
})

describe("names that are free", () => {
  it("numbers before the extension: name (1).ext, name (2).ext", () => {
    expect(numberedName("report.pdf", 1)).toBe("report (1).pdf")
    expect(numberedName("archive.tar.gz", 2)).toBe("archive.tar (2).gz")
    expect(numberedName("README", 3)).toBe("README (3)")
    expect(numberedName(".bashrc", 1)).toBe(".bashrc (1)")
    const long = "z".repeat(253) + ".md"
    expect(Buffer.byteLength(numberedName(long, 12))).toBeLessThanOrEqual(MAX_NAME_BYTES)
    expect(numberedName(long, 12).endsWith(" (12).md")).toBe(true)
  })

  it("freeName skips every taken name; withSuffix stays within the limit", () => {
    const taken = new Set(["a.txt", "a (1).txt", "a (2).txt"])
    expect(freeName("a.txt", (c) => taken.has(c))).toBe("a (3).txt")
    expect(freeName("b.txt", (c) => taken.has(c))).toBe("b.txt")
    expect(freeName("a.txt", () => true)).toBeUndefined()
    expect(Buffer.byteLength(withSuffix("q".repeat(255), ".part"))).toBe(MAX_NAME_BYTES)
    expect(withSuffix("q".repeat(255), ".part").endsWith(".part")).toBe(true)
  })

  it("sizes for people", () => {
    expect(sizeText(512)).toBe("512 B")
    expect(sizeText(2_100_000)).toBe("2.1 MB")
    expect(sizeText(210_000_000)).toBe("210 MB")
  })
})
