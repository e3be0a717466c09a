#!/usr/bin/env node
import "../dist/p2pchat.js"
