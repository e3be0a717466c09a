/**
 * resolveConfig (CLI.md "Options"): defaults, flags over environment over defaults, and a
 * UsageError naming the option for every bad value.
 */
import * as os from "node:os"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { Effect, Exit } from "effect"
import {
  make,
  type NodeConfig,
  parseDuration,
  type RawOptions,
  resolveConfig,
  UsageError
} from "../../src/services/Config.ts"

const resolved = (raw: RawOptions, env: NodeJS.ProcessEnv = {}): NodeConfig => {
  const r = resolveConfig(raw, env)
  if (r instanceof UsageError) throw new Error(`unexpected UsageError: ${r.message}`)
  return r
}

const usageError = (raw: RawOptions, env: NodeJS.ProcessEnv = {}): UsageError => {
  const r = resolveConfig(raw, env)
  if (!(r instanceof UsageError)) throw new Error(`expected a UsageError for ${JSON.stringify(raw)} ${JSON.stringify(env)}`)
  expect(r._tag).toBe("UsageError")
  return r
}

describe("resolveConfig defaults", () => {
  it("uses the documented defaults when nothing is given", () => {
    const c = resolved({}, { HOME: "/home/someone" })
    expect(c).toEqual({
      name: undefined,
      dataDir: path.join(os.homedir(), ".local", "share", "p2pchat"),
      udpPort: 6000,
      tcpPort: 6001,
      bind: undefined,
      targets: [],
      announceEveryMs: 8_000,
      awayAfterMs: 10_000,
      expireAfterMs: 15 * 60_000,
      json: false,
      logLevel: "info",
      maxPeers: 10_000,
      maxPeersPerAddress: 64,
      presenceRatePerAddress: 20,
      maxConnections: 1024,
      firstFrameTimeoutMs: 10_000,
      idleTimeoutMs: 5 * 60_000,
      maxConnectionsPerAddress: 64,
      idleTimeoutPlainMs: 30_000,
      maxFrameBytes: 64 * 1024,
      maxUnstoredMessages: 1000,
      downloads: path.join(path.join(os.homedir(), ".local", "share", "p2pchat"), "downloads"),
      maxFileSize: 8 * 1024 ** 3,
      acceptFilesFrom: []
    })
  })

  it("puts the data dir under $XDG_DATA_HOME when it is set", () => {
    expect(resolved({}, { XDG_DATA_HOME: "/xdg/data" }).dataDir).toBe("/xdg/data/p2pchat")
  })

  it("treats empty environment variables as unset", () => {
    const c = resolved({}, {
      P2PCHAT_NAME: "",
      P2PCHAT_UDP_PORT: "",
      P2PCHAT_TCP_PORT: "",
      P2PCHAT_BIND: "",
      P2PCHAT_TARGETS: "",
      P2PCHAT_LOG_LEVEL: "",
      P2PCHAT_DATA_DIR: "",
      XDG_DATA_HOME: "/xdg"
    })
    expect([c.name, c.udpPort, c.tcpPort, c.bind, c.targets, c.logLevel, c.dataDir]).toEqual([
      undefined,
      6000,
      6001,
      undefined,
      [],
      "info",
      "/xdg/p2pchat"
    ])
  })

  it("makes a relative data dir absolute", () => {
    expect(resolved({ dataDir: "rel/dir" }).dataDir).toBe(path.resolve("rel/dir"))
  })
})

describe("resolveConfig precedence: flags, then environment, then defaults", () => {
  const env = {
    P2PCHAT_NAME: "envname",
    P2PCHAT_DATA_DIR: "/env/data",
    P2PCHAT_UDP_PORT: "7000",
    P2PCHAT_TCP_PORT: "7001",
    P2PCHAT_BIND: "10.1.1.1",
    P2PCHAT_TARGETS: "10.9.9.9, 10.9.9.255:7777,,",
    P2PCHAT_LOG_LEVEL: "debug",
    XDG_DATA_HOME: "/xdg"
  }

  it("environment beats defaults", () => {
    const c = resolved({}, env)
    expect(c.name).toBe("envname")
    expect(c.dataDir).toBe("/env/data")
    expect(c.udpPort).toBe(7000)
    expect(c.tcpPort).toBe(7001)
    expect(c.bind).toBe("10.1.1.1")
    // A target without a port gets the UDP port in force.
    expect(c.targets).toEqual([{ host: "10.9.9.9", port: 7000 }, { host: "10.9.9.255", port: 7777 }])
    expect(c.logLevel).toBe("debug")
  })

  it("flags beat environment", () => {
    const c = resolved({
      name: "flagname",
      dataDir: "/flag/data",
      udpPort: "8000",
      tcpPort: "8001",
      bind: "127.0.0.1",
      targets: ["127.0.0.2", "peer-host.lan:9000"],
      announceEvery: "2s",
      awayAfter: "3s",
      expireAfter: "1m",
      json: true,
      logLevel: "WARNING"
    }, env)
    expect(c).toEqual({
      name: "flagname",
      dataDir: "/flag/data",
      udpPort: 8000,
      tcpPort: 8001,
      bind: "127.0.0.1",
      targets: [{ host: "127.0.0.2", port: 8000 }, { host: "peer-host.lan", port: 9000 }],
      announceEveryMs: 2_000,
      awayAfterMs: 3_000,
      expireAfterMs: 60_000,
      json: true,
      logLevel: "warning",
      maxPeers: 10_000,
      maxPeersPerAddress: 64,
      presenceRatePerAddress: 20,
      maxConnections: 1024,
      firstFrameTimeoutMs: 10_000,
      idleTimeoutMs: 5 * 60_000,
      maxConnectionsPerAddress: 64,
      idleTimeoutPlainMs: 30_000,
      maxFrameBytes: 64 * 1024,
      maxUnstoredMessages: 1000,
      downloads: path.join("/flag/data", "downloads"),
      maxFileSize: 8 * 1024 ** 3,
      acceptFilesFrom: []
    })
  })

  it("an empty --target list falls back to the environment's targets", () => {
    expect(resolved({ targets: [] }, env).targets).toHaveLength(2)
  })

  it("port 0 (the OS chooses) is accepted, and targets then default to port 6000", () => {
    const c = resolved({ udpPort: "0", tcpPort: "0", targets: ["127.0.0.1"] })
    expect([c.udpPort, c.tcpPort]).toEqual([0, 0])
    expect(c.targets).toEqual([{ host: "127.0.0.1", port: 6000 }])
  })
})

describe("the limits are configurable from the command line", () => {
  it("--max-peers, --max-connections, --first-frame-timeout and --idle-timeout set their limits", () => {
    const c = resolveConfig({ maxPeers: "500", maxConnections: "64", firstFrameTimeout: "2s", idleTimeout: "1m" }, {})
    expect(c).not.toBeInstanceOf(UsageError)
    const config = c as NodeConfig
    expect([config.maxPeers, config.maxConnections, config.firstFrameTimeoutMs, config.idleTimeoutMs]).toEqual([500, 64, 2000, 60_000])
  })
})

describe("resolveConfig refuses bad values with a UsageError naming the option", () => {
  const cases: ReadonlyArray<readonly [string, RawOptions, NodeJS.ProcessEnv?]> = [
    ["--udp-port", { udpPort: "abc" }],
    ["--udp-port", { udpPort: "65536" }],
    ["--udp-port", { udpPort: "-1" }],
    ["--udp-port", { udpPort: "1.5" }],
    ["--udp-port", { udpPort: "6000x" }],
    ["--udp-port", { udpPort: "" }],
    ["--udp-port", {}, { P2PCHAT_UDP_PORT: "nope" }],
    ["--tcp-port", { tcpPort: "abc" }],
    ["--tcp-port", { tcpPort: "70000" }],
    ["--tcp-port", {}, { P2PCHAT_TCP_PORT: "0x10" }],
    ["--announce-every", { announceEvery: "5x" }],
    ["--announce-every", { announceEvery: "8" }],
    ["--announce-every", { announceEvery: "0s" }],
    ["--announce-every", { announceEvery: "-1s" }],
    ["--away-after", { awayAfter: "5x" }],
    ["--away-after", { awayAfter: "" }],
    ["--away-after", { awayAfter: "ten seconds" }],
    ["--expire-after", { expireAfter: "15 minutes" }],
    ["--expire-after", { expireAfter: "1d" }],
    ["--target", { targets: ["10.0.0.1:70000"] }],
    ["--target", { targets: ["10.0.0.1:abc"] }],
    ["--target", { targets: ["10.0.0.1:1:2"] }],
    ["--target", { targets: [":6000"] }],
    ["--target", { targets: ["-bad-host-"] }],
    ["--target", { targets: ["127.0.0.1", "bad host"] }],
    ["--target", {}, { P2PCHAT_TARGETS: "10.0.0.1,not a host" }],
    ["--bind", { bind: "localhost" }],
    ["--bind", { bind: "256.0.0.1" }],
    ["--bind", { bind: "::1" }],
    ["--bind", { bind: "10.0.0" }],
    ["--bind", {}, { P2PCHAT_BIND: "eth0" }],
    ["--log-level", { logLevel: "verbose" }],
    ["--log-level", {}, { P2PCHAT_LOG_LEVEL: "trace" }],
    ["--name", { name: "" }],
    ["--name", { name: "a".repeat(33) }],
    ["--name", { name: "a\nb" }],
    ["--name", { name: "a\u0000b" }],
    ["--name", { name: " alice" }],
    ["--name", {}, { P2PCHAT_NAME: "bad\u007fname" }],
    ["--name", { name: "bob\u200b" }],
    ["--name", { name: "\u202ebob" }],
    ["--name", {}, { P2PCHAT_NAME: "bob\u2800" }],
    ["--expire-after", { awayAfter: "10s", expireAfter: "10s" }],
    ["--expire-after", { expireAfter: "5s" }],
    ["--expire-after", { awayAfter: "2m", expireAfter: "1m" }],
    ["--max-peers", { maxPeers: "0" }],
    ["--max-peers", { maxPeers: "lots" }],
    ["--max-connections", { maxConnections: "-5" }],
    ["--first-frame-timeout", { firstFrameTimeout: "10" }],
    ["--idle-timeout", { idleTimeout: "forever" }]
  ]

  for (const [option, raw, env] of cases) {
    it(`${option}: ${JSON.stringify(raw)}${env === undefined ? "" : ` env ${JSON.stringify(env)}`}`, () => {
      const e = usageError(raw, env ?? {})
      expect(e.message).toContain(option)
      expect(e).toBeInstanceOf(UsageError)
    })
  }

  it("a refused name: the message names the character as U+XXXX and shows it escaped", () => {
    const message = usageError({ name: "bob\u200b" }).message
    expect(message).toBe("--name: a username cannot contain U+200B (a format (invisible) character), got \"bob\\u{200b}\"")
  })

  it("the name is kept in NFC: a decomposed é becomes the composed one", () => {
    expect(Effect.runSync(make({ name: "Jose\u0301" }, {})).name).toBe("Jos\u00e9")
  })

  it("the message also quotes the bad value", () => {
    expect(usageError({ udpPort: "abc" }).message).toContain("abc")
    expect(usageError({ awayAfter: "5x" }).message).toContain("5x")
    expect(usageError({ targets: ["10.0.0.1:70000"] }).message).toContain("70000")
  })

  it("accepts expire-after just longer than away-after", () => {
    const c = resolved({ awayAfter: "10s", expireAfter: "10001ms" })
    expect([c.awayAfterMs, c.expireAfterMs]).toEqual([10_000, 10_001])
  })
})

describe("durations", () => {
  it.each([
    ["500ms", 500],
    ["8s", 8_000],
    ["15m", 900_000],
    ["1h", 3_600_000],
    ["1.5m", 90_000],
    [" 2s ", 2_000]
  ])("%s is %d ms", (text, ms) => {
    expect(parseDuration(text)).toBe(ms)
  })

  it.each(["", "8", "s", "5x", "0s", "0ms", "-1s", "1e3ms", "1 d", "8 seconds", "1h30m"])("%j is not a duration", (text) => {
    expect(parseDuration(text)).toBeUndefined()
  })

  it("resolveConfig reads them for every timer", () => {
    const c = resolved({ announceEvery: "500ms", awayAfter: "8s", expireAfter: "1h" })
    expect([c.announceEveryMs, c.awayAfterMs, c.expireAfterMs]).toEqual([500, 8_000, 3_600_000])
    expect(resolved({ expireAfter: "15m" }).expireAfterMs).toBe(900_000)
  })
})

describe("make: resolveConfig as an effect", () => {
  it("succeeds with the resolved configuration", () => {
    const config = Effect.runSync(make({ name: "alice", udpPort: "7000" }, {}))
    expect(config).toEqual(resolved({ name: "alice", udpPort: "7000" }))
  })

  it("fails with the UsageError resolveConfig returns", () => {
    const exit = Effect.runSyncExit(make({ udpPort: "70000" }, {}))
    expect(exit).toEqual(Exit.fail(usageError({ udpPort: "70000" })))
  })
})
