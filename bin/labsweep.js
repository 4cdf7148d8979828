#!/usr/bin/env node
import module from "node:module";

// Node 22.1+: compiled code is kept on disk (the OS temp dir) and reused, so the next command
// starts without compiling labsweep and its libraries again; Node 20 has no such cache.
// NODE_DISABLE_COMPILE_CACHE=1 turns it off.
module.enableCompileCache?.();
const { main } = await import("../dist/bundle/main.js");

process.exitCode = await main(process.argv);
