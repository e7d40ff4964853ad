/**
 * The boot storm's client side; bench/storm.ts runs it inside the client
 * namespace: node --import tsx bench/storm-client.ts '<json StormPlan>'.
 * Starts every blade within `spreadMs`, each walking its boot path, and
 * prints one JSON StormOutcome line on stdout.
 *
 *   ipxe:     DHCP as PXE firmware -> TFTP undionly.kpxe -> DHCP as iPXE ->
 *             GET boot.ipxe -> GET /ipxe?mac= -> GET kernel -> GET initrd(s)
 *             -> GET ignition.config.url
 *   pxelinux: DHCP as PXE firmware -> TFTP pxelinux.0, ldlinux.c32,
 *             pxelinux.cfg/01-<mac> -> TFTP kernel -> TFTP initrds (the
 *             Flatcar one and oem/<mac>.cpio.gz, which carries Ignition)
 *   bulk:     no boot at all: `n` GETs of one URL at once (the bandwidth probe)
 */
import http from 'node:http';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { DhcpMux, tftpGet, httpGet, httpSink } from './lib/blade.js';

export type BootPath = 'ipxe' | 'pxelinux';
export type Step = 'dhcp' | 'tftp-loader' | 'dhcp-ipxe' | 'script' | 'kernel' | 'initrd' | 'ignition';

export interface StormPlan {
  mode: 'storm' | 'bulk';
  blades?: { mac: string; path: BootPath }[];
  spreadMs?: number;
  blksize?: number;
  bulk?: { url: string; n: number; local: string };
  timeoutMs: number;
}

export interface BladeResult {
  mac: string;
  ok: boolean;
  error?: string;
  failedStep?: Step;
  steps: Partial<Record<Step, number>>;
  totalMs: number;
  bytes: number;
  dhcpTries: number;
  tftpRetransmits: number;
}

export interface StormOutcome {
  /** This client's own event-loop delay during the run (ms): large values mean the client, not the server, made steps slow. */
  clientLoopDelayMs: { p50: number; p99: number; max: number };
  wallMs: number;
  bytes: number;
  blades: BladeResult[];
}

function hyphen(mac: string): string {
  return mac.replace(/:/g, '-');
}

/** The lines of an iPXE script this simulation follows: set base, chain, kernel, initrd. ${base} and ${netX/mac:hexhyp} expanded. */
export function ipxeScript(text: string, mac: string): { chain?: string; kernel?: string; args: string[]; initrds: string[] } {
  let base = '';
  const out: { chain?: string; kernel?: string; args: string[]; initrds: string[] } = { args: [], initrds: [] };
  const expand = (s: string) => s.replace(/\$\{base\}/g, base).replace(/\$\{net[X0-9]\/mac:hexhyp\}/g, hyphen(mac));
  for (const raw of text.split('\n')) {
    const line = raw.replace(/\s*\|\|.*$/, '').trim();
    const words = line.split(/\s+/);
    if (words[0] === 'set' && words[1] === 'base') base = words[2] ?? '';
    else if (words[0] === 'chain' && out.chain === undefined) out.chain = expand(words[1] ?? '');
    else if (words[0] === 'kernel') {
      out.kernel = expand(words[1] ?? '');
      out.args = words.slice(2).map(expand);
    } else if (words[0] === 'initrd') out.initrds.push(expand(words[words.length - 1] ?? ''));
  }
  return out;
}

/** kernel and initrd lines of a pxelinux config. */
export function pxelinuxConfig(text: string): { kernel?: string; initrds: string[] } {
  const kernel = /^\s*kernel\s+(\S+)/im.exec(text)?.[1];
  const initrd = /^\s*initrd\s+(\S+)/im.exec(text)?.[1];
  return { ...(kernel ? { kernel } : {}), initrds: initrd ? initrd.split(',') : [] };
}

async function blade(mux: DhcpMux, mac: string, path: BootPath, blksize: number): Promise<BladeResult> {
  const r: BladeResult = { mac, ok: false, steps: {}, totalMs: 0, bytes: 0, dhcpTries: 0, tftpRetransmits: 0 };
  const t0 = performance.now();
  let step: Step = 'dhcp';
  const timed = async <T>(s: Step, fn: () => Promise<T>): Promise<T> => {
    step = s;
    const t = performance.now();
    const v = await fn();
    r.steps[s] = (r.steps[s] ?? 0) + (performance.now() - t);
    return v;
  };
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  try {
    const lease = await timed('dhcp', () => mux.dora(mac, false));
    r.dhcpTries += lease.tries;
    const server = lease.siaddr !== '0.0.0.0' ? lease.siaddr : lease.serverId;
    const tftp = async (name: string, keep = false) => {
      const got = await tftpGet(lease.ip, server, name, blksize, keep);
      r.bytes += got.bytes;
      r.tftpRetransmits += got.retransmits;
      return got;
    };
    if (path === 'ipxe') {
      if (!/undionly\.kpxe$/.test(lease.file)) throw new Error(`firmware DHCP: expected undionly.kpxe, got boot file "${lease.file}"`);
      await timed('tftp-loader', () => tftp(lease.file));
      const second = await timed('dhcp-ipxe', () => mux.dora(mac, true));
      r.dhcpTries += second.tries;
      if (second.ip !== lease.ip) throw new Error(`iPXE DHCP gave ${second.ip}, firmware DHCP gave ${lease.ip}`);
      if (!/^https?:\/\//.test(second.file)) throw new Error(`iPXE DHCP: expected an http:// boot file, got "${second.file}"`);
      const script = await timed('script', async () => {
        const first = await httpGet(agent, lease.ip, second.file, true);
        const entry = ipxeScript(first.text ?? '', mac);
        // The DHCP boot file may be the generic boot.ipxe (which chains to the per-MAC script) or the per-MAC script itself.
        if (entry.kernel !== undefined) return entry;
        if (entry.chain === undefined) throw new Error(`${second.file} has neither a kernel nor a chain line: ${JSON.stringify(first.text?.slice(0, 300))}`);
        return ipxeScript((await httpGet(agent, lease.ip, entry.chain, true)).text ?? '', mac);
      });
      if (script.kernel === undefined) throw new Error('the per-MAC iPXE script has no kernel line');
      const kernel = script.kernel;
      r.bytes += (await timed('kernel', () => httpSink(lease.ip, kernel))).bytes;
      await timed('initrd', async () => {
        for (const url of script.initrds) r.bytes += (await httpSink(lease.ip, url)).bytes;
      });
      const ign = script.args.find((a) => a.startsWith('ignition.config.url='))?.slice('ignition.config.url='.length);
      if (ign === undefined) throw new Error('no ignition.config.url on the kernel line');
      // A new connection: the scripts' one sat idle through minutes of kernel and initrd, and the server has closed it.
      const cfg = await timed('ignition', () => httpGet(new http.Agent({ keepAlive: false }), lease.ip, ign, true));
      if (!(cfg.text ?? '').includes('"ignition"')) throw new Error('the Ignition config does not look like one');
      r.bytes += cfg.bytes;
    } else {
      if (!/pxelinux\.0$/.test(lease.file)) throw new Error(`firmware DHCP: expected pxelinux.0, got boot file "${lease.file}"`);
      const cfg = await timed('tftp-loader', async () => {
        await tftp(lease.file);
        await tftp('ldlinux.c32');
        return pxelinuxConfig((await tftp(`pxelinux.cfg/01-${hyphen(mac)}`, true)).data?.toString('latin1') ?? '');
      });
      if (cfg.kernel === undefined) throw new Error('pxelinux config has no kernel line');
      const kernel = cfg.kernel;
      await timed('kernel', () => tftp(kernel));
      await timed('initrd', async () => {
        for (const name of cfg.initrds) await tftp(name);
      });
    }
    r.ok = true;
  } catch (err) {
    r.error = (err as Error).message;
    r.failedStep = step;
  } finally {
    agent.destroy();
    r.totalMs = performance.now() - t0;
  }
  return r;
}

async function main(): Promise<void> {
  const plan = JSON.parse(process.argv[2] ?? '{}') as StormPlan;
  const killer = setTimeout(() => {
    process.stderr.write(`storm-client: still running after ${plan.timeoutMs} ms, giving up\n`);
    process.exit(3);
  }, plan.timeoutMs);
  killer.unref();
  const lag = monitorEventLoopDelay({ resolution: 10 });
  lag.enable();
  const t0 = performance.now();
  let blades: BladeResult[];
  if (plan.mode === 'bulk' && plan.bulk) {
    const { url, n, local } = plan.bulk;
    blades = await Promise.all(
      [...Array(n).keys()].map(async (i): Promise<BladeResult> => {
        const s = performance.now();
        try {
          const got = await httpSink(local, url);
          return { mac: `bulk${i}`, ok: true, steps: {}, totalMs: performance.now() - s, bytes: got.bytes, dhcpTries: 0, tftpRetransmits: 0 };
        } catch (err) {
          return { mac: `bulk${i}`, ok: false, error: (err as Error).message, steps: {}, totalMs: performance.now() - s, bytes: 0, dhcpTries: 0, tftpRetransmits: 0 };
        }
      }),
    );
  } else {
    const mux = await DhcpMux.open();
    const list = plan.blades ?? [];
    const spread = plan.spreadMs ?? 1000;
    blades = await Promise.all(
      list.map(
        (b, i) =>
          new Promise<BladeResult>((resolve) => {
            setTimeout(() => void blade(mux, b.mac, b.path, plan.blksize ?? 1468).then(resolve), (i * spread) / Math.max(1, list.length));
          }),
      ),
    );
    mux.close();
  }
  lag.disable();
  // The histogram holds whole timer intervals (resolution included): the lag is what exceeds 10 ms.
  const over = (ns: number) => Math.max(0, ns / 1e6 - 10);
  const clientLoopDelayMs = { p50: over(lag.percentile(50)), p99: over(lag.percentile(99)), max: over(lag.max) };
  const outcome: StormOutcome = { clientLoopDelayMs, wallMs: performance.now() - t0, bytes: blades.reduce((a, b) => a + b.bytes, 0), blades };
  process.stdout.write(JSON.stringify(outcome) + '\n');
}

if (process.argv[1] !== undefined && import.meta.url.endsWith(process.argv[1].split('/').pop() ?? '')) await main();
