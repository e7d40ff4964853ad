/**
 * The TFTP front end: read-only, serves files under one root directory and
 * files a callback generates (per-MAC pxelinux configs, oem initrds).
 *
 * Built on our own codec and transfer engine, using only the `tftp`
 * package's opcode and error tables. Its server was audited and not used
 * (test/server/tftp/package-audit.test.ts pins each point): with its default
 * handler a request for a missing file kills the process (pxelinux asks for
 * several missing names on every boot), and so does a 1-byte packet on a
 * transfer socket; it cannot take an injected socket or bind port 0 (0
 * becomes 69); it accepts ACKs from any address on a transfer socket (no TID
 * check); after a partial ACK its window grows past the negotiated
 * windowsize; it writes files for WRQ unless told not to; it follows
 * symlinks out of the root; it has no bound on concurrent transfers. Its
 * block-number rollover (65535 -> 0) reads correctly and was not a reason.
 *
 * Mode: netascii requests are served as octet (bytes unchanged, tsize is
 * the file size): every file here is a binary or a config the boot loader
 * reads in either form. mail mode is refused (error 4).
 */
import type { Socket, RemoteInfo, SocketType } from 'node:dgram';
import { udpSocket } from '../udp.js';
import type { AddressInfo } from 'node:net';
import { realpath } from 'node:fs/promises';
import type { Logger } from '../log.js';
import { DecodeError, SwarmbootError } from '../errors.js';
import { decodePacket, encodePacket, errorPacket, ERROR_CODE, type TftpPacket, type TftpRequest } from './packet.js';
import { negotiate, type Negotiated } from './options.js';
import { checkTftpPath } from './paths.js';
import { BufferReader, FileReader, openUnderRoot, isDirectory, type BlockReader } from './source.js';
import { Transfer, type Remote, type TransferCounters, type TransferResult } from './transfer.js';

export type { Remote } from './transfer.js';

/** Supplies files that are not on disk; null means "not mine, look in the root". */
export type GeneratedFiles = (path: string, remote: Remote) => Promise<Buffer | null>;

export interface TftpTransferEvent {
  /** The normalised path (root-relative, no leading `/`), or the raw name when it was refused before normalising. */
  readonly path: string;
  readonly remote: Remote;
  /** File bytes the client acknowledged. */
  readonly bytes: number;
  readonly ok: boolean;
  readonly error?: string;
  readonly source?: 'file' | 'generated';
  readonly size?: number;
  readonly blksize?: number;
  readonly windowsize?: number;
  readonly durationMs: number;
}

export interface TftpServerOptions {
  /** A bound UDP socket to serve on (tests pass one bound to 127.0.0.1:0). The caller keeps ownership. */
  readonly socket?: Socket;
  /** Otherwise, where to bind; the server owns that socket and closes it. */
  readonly bind?: { readonly address: string; readonly port: number };
  readonly root: string;
  readonly generated?: GeneratedFiles;
  /** Largest blksize granted (default 1468: one block per Ethernet frame). */
  readonly blksizeCap?: number;
  /** Largest windowsize granted (default 64). */
  readonly windowsizeCap?: number;
  /** Concurrent transfers; requests beyond get "server busy" (default 64). */
  readonly maxTransfers?: number;
  /** Retransmit timeout when the client sets none (default 1000 ms). */
  readonly timeoutMs?: number;
  /** Retransmissions without progress before giving up (default 5). */
  readonly retries?: number;
  readonly log: Logger;
  readonly onTransfer?: (event: TftpTransferEvent) => void;
}

export interface TftpStats {
  readonly active: number;
  readonly started: number;
  readonly completed: number;
  readonly failed: number;
  /** Requests answered with an error (not found, access violation, WRQ, bad mode). */
  readonly refused: number;
  /** Requests answered with "server busy". */
  readonly busy: number;
  /** Undecodable packets, dropped. */
  readonly malformed: number;
  /** Packets on a transfer socket from the wrong address/port, answered with error 5. */
  readonly wrongTid: number;
  /** Well-formed packets that make no sense where they arrived (DATA or ACK on the request port, ...), dropped. */
  readonly stray: number;
  /** Retransmitted RRQs ignored because that transfer is already running. */
  readonly duplicates: number;
  readonly retransmits: number;
  readonly bytesSent: number;
}

export interface TftpServer {
  address(): AddressInfo;
  /** Stops taking requests, aborts running transfers and waits until their files are closed. */
  close(): Promise<void>;
  stats(): TftpStats;
}

export const DEFAULTS = {
  blksizeCap: 1468,
  windowsizeCap: 64,
  maxTransfers: 64,
  timeoutMs: 1000,
  retries: 5,
} as const;

function bindSocket(socket: Socket, port: number, address: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => reject(err);
    socket.once('error', onError);
    socket.bind(port, address, () => {
      socket.off('error', onError);
      resolve();
    });
  });
}

function socketTypeFor(address: string): SocketType {
  return address.includes(':') ? 'udp6' : 'udp4';
}

/** Maps an error from the generated-files callback to a TFTP error code and whether it is our bug. */
function generatedErrorCode(err: unknown): { code: number; internal: boolean } {
  if (err instanceof SwarmbootError) {
    if (err.status === 404) return { code: ERROR_CODE.NOT_FOUND, internal: false };
    if (err.status === 403 || err.status === 400) return { code: ERROR_CODE.ACCESS, internal: false };
  }
  return { code: ERROR_CODE.UNDEFINED, internal: true };
}

export async function createTftpServer(opts: TftpServerOptions): Promise<TftpServer> {
  const log = opts.log.child({ subsystem: 'tftp' });
  const limits = {
    blksizeCap: opts.blksizeCap ?? DEFAULTS.blksizeCap,
    windowsizeCap: opts.windowsizeCap ?? DEFAULTS.windowsizeCap,
  };
  const maxTransfers = opts.maxTransfers ?? DEFAULTS.maxTransfers;
  const defaultTimeoutMs = opts.timeoutMs ?? DEFAULTS.timeoutMs;
  const retries = opts.retries ?? DEFAULTS.retries;

  if (!(await isDirectory(opts.root))) throw new SwarmbootError('E_TFTP_ROOT', 500, `tftp root ${JSON.stringify(opts.root)} is not a directory`);
  const realRoot = await realpath(opts.root);

  let socket: Socket;
  const owned = opts.socket === undefined;
  if (opts.socket !== undefined) {
    socket = opts.socket;
  } else {
    if (opts.bind === undefined) throw new SwarmbootError('E_TFTP_BIND', 500, 'tftp: give either a socket or a bind address');
    socket = udpSocket(socketTypeFor(opts.bind.address));
    await bindSocket(socket, opts.bind.port, opts.bind.address);
  }
  const local = socket.address(); // throws when an injected socket is not bound: a wiring bug
  const transferType: SocketType = local.family === 'IPv6' ? 'udp6' : 'udp4';

  const counters: TransferCounters & {
    started: number;
    completed: number;
    failed: number;
    refused: number;
    busy: number;
    duplicates: number;
    bytesSent: number;
  } = { malformed: 0, wrongTid: 0, stray: 0, retransmits: 0, started: 0, completed: 0, failed: 0, refused: 0, busy: 0, duplicates: 0, bytesSent: 0 };

  /** Requests being opened plus transfers running: what maxTransfers bounds. */
  let inFlight = 0;
  const transfers = new Set<Transfer>();
  /** "address|port|file" of requests being opened or served, to recognise retransmitted RRQs. */
  const running = new Map<string, { transfer: Transfer | null }>();
  const settled = new Set<Promise<void>>();
  let closing = false;

  const report = (event: TftpTransferEvent): void => {
    try {
      opts.onTransfer?.(event);
    } catch (err) {
      log.error({ err }, 'tftp: onTransfer callback threw');
    }
  };

  /** Replies from the request port; a socket closed under us (an injected one, say) must not throw. */
  const reply = (buf: Buffer, remote: Remote): void => {
    try {
      socket.send(buf, remote.port, remote.address);
    } catch (err) {
      log.warn({ err, remote }, 'tftp: cannot reply on the request socket');
    }
  };

  const refuse = (remote: Remote, path: string, code: number, reason: string, extra: { message?: string; started?: number } = {}): void => {
    counters.refused++;
    log.warn({ remote, path, code, reason }, 'tftp: request refused');
    reply(errorPacket(code, extra.message), remote);
    report({ path, remote, bytes: 0, ok: false, error: reason, durationMs: extra.started === undefined ? 0 : Date.now() - extra.started });
  };

  const onRequest = (msg: Buffer, rinfo: RemoteInfo): void => {
    if (closing) return;
    const remote: Remote = { address: rinfo.address, port: rinfo.port };
    let packet: TftpPacket;
    try {
      packet = decodePacket(msg);
    } catch (err) {
      counters.malformed++;
      if (err instanceof DecodeError) log.debug({ remote, reason: err.message }, 'tftp: malformed packet dropped');
      else log.error({ err, remote }, 'tftp: decoder failed (bug); packet dropped');
      return;
    }
    if (packet.op === 'WRQ') {
      refuse(remote, packet.filename, ERROR_CODE.ACCESS, 'write request on a read-only server', { message: 'Access violation: read-only server' });
      return;
    }
    if (packet.op !== 'RRQ') {
      counters.stray++;
      log.debug({ remote, op: packet.op }, 'tftp: non-request packet on the request port dropped');
      return;
    }
    const key = `${remote.address}|${remote.port}|${packet.filename}`;
    const current = running.get(key);
    if (current !== undefined && (current.transfer === null || current.transfer.awaitingClient())) {
      counters.duplicates++;
      return;
    }
    if (inFlight >= maxTransfers) {
      counters.busy++;
      log.warn({ remote, path: packet.filename, maxTransfers }, 'tftp: busy, request refused');
      reply(errorPacket(ERROR_CODE.UNDEFINED, 'Server busy, try again later'), remote);
      report({ path: packet.filename, remote, bytes: 0, ok: false, error: 'server busy', durationMs: 0 });
      return;
    }
    inFlight++;
    const entry: { transfer: Transfer | null } = { transfer: null };
    running.set(key, entry);
    const done = serve(packet, remote, (t) => (entry.transfer = t)).catch((err: unknown) => {
      log.error({ err, remote, path: packet.filename }, 'tftp: request failed unexpectedly');
    });
    const tracked = done.finally(() => {
      inFlight--;
      // A newer request from the same port may own the key by now.
      if (running.get(key) === entry) running.delete(key);
      settled.delete(tracked);
    });
    settled.add(tracked);
  };

  /** Opens the source, negotiates, runs the transfer; resolves when the transfer is over and its file closed. */
  async function serve(req: TftpRequest, remote: Remote, onStart: (t: Transfer) => void): Promise<void> {
    const started = Date.now();
    if (req.mode === 'mail') return refuse(remote, req.filename, ERROR_CODE.ILLEGAL_OP, 'mail mode requested', { started });
    const verdict = checkTftpPath(req.filename);
    if (!verdict.ok) return refuse(remote, req.filename, verdict.code, verdict.reason, { started });
    const path = verdict.path;

    let data: Buffer | null = null;
    if (opts.generated !== undefined) {
      try {
        data = await opts.generated(path, remote);
      } catch (err) {
        const { code, internal } = generatedErrorCode(err);
        if (internal) log.error({ err, remote, path }, 'tftp: generating a file failed');
        const reason = `generator: ${err instanceof Error ? err.message : String(err)}`;
        return refuse(remote, path, code, reason, internal ? { message: 'Internal error', started } : { started });
      }
    }
    let reader: BlockReader;
    let n: Negotiated;
    const source = data !== null ? 'generated' : 'file';
    if (data !== null) {
      n = negotiate(req.options, data.length, limits);
      reader = new BufferReader(data, n.blksize);
    } else {
      const opened = await openUnderRoot(realRoot, path);
      if (!opened.ok) return refuse(remote, path, opened.code, opened.reason, { started });
      n = negotiate(req.options, opened.size, limits);
      reader = new FileReader(opened.fh, opened.size, n.blksize);
    }
    const size = reader.size;

    let tid: Socket | null = null;
    try {
      if (!closing) {
        tid = udpSocket(transferType);
        await bindSocket(tid, 0, local.address);
      }
    } catch (err) {
      tid?.close();
      tid = null;
      log.error({ err, remote, path }, 'tftp: cannot open a transfer socket');
      reply(errorPacket(ERROR_CODE.UNDEFINED, 'Internal error'), remote);
    }
    if (tid === null || closing) {
      tid?.close();
      await reader.close();
      return;
    }
    const transferSocket = tid;

    const tlog = log.child({ remote: `${remote.address}:${remote.port}`, path });
    if (n.ignored.length > 0) tlog.debug({ ignored: n.ignored }, 'tftp: options ignored');
    const result = await new Promise<TransferResult>((resolve) => {
      const transfer = new Transfer({
        socket: transferSocket,
        remote,
        reader,
        blksize: n.blksize,
        windowsize: n.windowsize,
        timeoutMs: n.timeoutMs ?? defaultTimeoutMs,
        retries,
        oack: n.oack === null ? null : encodePacket({ op: 'OACK', options: n.oack }),
        counters,
        log: tlog,
        onDone: (r) => {
          transfers.delete(transfer);
          resolve(r);
        },
      });
      transfers.add(transfer);
      onStart(transfer);
      counters.started++;
      transfer.start();
    });

    const durationMs = Date.now() - started;
    const fields = { source, size, bytes: result.bytes, blksize: n.blksize, windowsize: n.windowsize, mode: req.mode, options: n.oack !== null, durationMs };
    if (result.ok) {
      counters.completed++;
      counters.bytesSent += result.bytes;
      tlog.info(fields, 'tftp: sent');
    } else {
      counters.failed++;
      tlog.info({ ...fields, reason: result.error }, 'tftp: transfer failed');
    }
    const event: TftpTransferEvent = { path, remote, bytes: result.bytes, ok: result.ok, source, size, blksize: n.blksize, windowsize: n.windowsize, durationMs };
    report(result.error === undefined ? event : { ...event, error: result.error });
  }

  const onSocketError = (err: Error): void => {
    log.error({ err }, 'tftp: request socket error');
  };
  socket.on('message', onRequest);
  socket.on('error', onSocketError);
  log.info({ address: local.address, port: local.port, root: realRoot, maxTransfers, ...limits }, 'tftp: listening');

  let closed: Promise<void> | null = null;
  return {
    address: () => local,
    stats: () => ({
      active: transfers.size,
      started: counters.started,
      completed: counters.completed,
      failed: counters.failed,
      refused: counters.refused,
      busy: counters.busy,
      malformed: counters.malformed,
      wrongTid: counters.wrongTid,
      stray: counters.stray,
      duplicates: counters.duplicates,
      retransmits: counters.retransmits,
      bytesSent: counters.bytesSent,
    }),
    close: () => {
      if (closed === null) {
        closing = true;
        socket.off('message', onRequest);
        for (const t of transfers) t.abort('Server shutting down');
        closed = Promise.all([...settled]).then(async () => {
          socket.off('error', onSocketError);
          if (owned) await new Promise<void>((resolve) => socket.close(() => resolve()));
        });
      }
      return closed;
    },
  };
}
