#!/usr/bin/env node
// The swarmboot command. Everything else is wired in server/cli/.
import { main } from './cli/index.js';
import { processIO } from './cli/io.js';

process.exitCode = await main(process.argv.slice(2), { ...processIO, isTTY: process.stdout.isTTY } as typeof processIO);
