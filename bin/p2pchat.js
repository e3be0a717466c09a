#!/usr/bin/env node
// Everything p2pchat creates is its user's alone (files 0600, directories 0700), whatever
// the shell's umask; set before anything opens a file, so the bundle is imported after it
// (a static import would run first).
process.umask(0o077)
await import("../dist/p2pchat.js")
