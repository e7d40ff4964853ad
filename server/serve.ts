/**
 * The composition root: the one place that constructs stores and servers
 * and wires them together (STYLE.md: nothing else constructs services).
 * DHCP, TFTP and HTTP all ask the one BootService what a machine gets; the
 * ProfileStore, LeaseStore and MachineStates each own their state.
 */
import type { Socket } from 'node:dgram';
import { udpSocket } from './udp.js';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import type { ServerConfig } from './config/server-config.js';
import type { Logger } from './log.js';
import { parseMac, type Mac } from './mac.js';
import { Metrics } from './metrics.js';
import { ProfileStore } from './profiles/store.js';
import { BootService } from './boot/service.js';
import { loadServerKey } from './swarm/secret.js';
import { MachineStates, type TrailStep } from './state/machines.js';
import { LeaseStore } from './dhcp/leases.js';
import { compilePools } from './dhcp/pool.js';
import { DhcpServer } from './dhcp/server.js';
import { createTftpServer, type TftpServer } from './tftp/index.js';
import { createHttpApp, startHttpServer } from './http/app.js';
import { AssetCache } from './http/asset-cache.js';
import { installBootBinaries } from './assets/boot-binaries.js';
import { unmetNeeds } from './assets/status.js';
import type { ProfileSet } from './profiles/types.js';
import { FLATCAR_KERNEL, OEM_INITRD } from './boot/layout.js';
import { Rendezvous } from './swarm/rendezvous.js';
import { FileSwarmStore } from './swarm/store.js';
import { createSwarmRouter } from './swarm/api.js';

export interface Running {
  readonly httpPort: number;
  readonly tftpPort: number | null;
  readonly boot: BootService;
  readonly profiles: ProfileStore;
  readonly metrics: Metrics;
  /** SIGHUP: reload profiles (keeps the last good set on error). */
  reload(): void;
  /** SIGTERM: stop taking work, finish or cut transfers, flush state. */
  close(): Promise<void>;
}

/** Which trail step a served file is. */
export function stepForFile(path: string): TrailStep {
  const base = path.split('/').pop() ?? path;
  if (path.startsWith('pxelinux.cfg/')) return 'pxelinux-config';
  if (path.startsWith('oem/') || base === OEM_INITRD) return 'oem';
  if (base === FLATCAR_KERNEL) return 'kernel';
  if (base.endsWith('.cpio.gz')) return 'initrd';
  return 'tftp';
}

function bindUdp(address: string, port: number, log: Logger): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const sock = udpSocket('udp4', { reuseAddr: true });
    sock.once('error', reject);
    sock.bind({ address, port }, () => {
      sock.off('error', reject);
      sock.setBroadcast(true);
      sock.on('error', (err) => log.error({ err, port }, 'UDP socket error'));
      resolve(sock);
    });
  });
}

export async function startSwarmboot(cfg: ServerConfig, log: Logger): Promise<Running> {
  const started: { close(): Promise<void> | void }[] = [];
  const closeAll = async () => {
    for (const s of started.reverse()) {
      try {
        await s.close();
      } catch (err) {
        log.error({ err }, 'error while stopping');
      }
    }
  };
  try {
    mkdirSync(cfg.stateDir, { recursive: true, mode: 0o700 });
    mkdirSync(cfg.assetsDir, { recursive: true });
    const bins = installBootBinaries(cfg.assetsDir);
    if (bins.copied.length > 0) log.info({ copied: bins.copied, assets: cfg.assetsDir }, 'boot binaries copied from Debian packages');
    for (const m of bins.missing) {
      (m.optional ? log.info : log.warn).call(log, { file: m.name, fix: m.fix }, `boot binary ${m.name} is missing`);
    }

    const metrics = new Metrics();
    // How long work waited for the event loop since the last scrape: every DHCP reply, TFTP block and
    // HTTP chunk of this one process queues behind whatever else runs, so this is the latency floor.
    const LOOP_RESOLUTION_MS = 10;
    const loopDelay = monitorEventLoopDelay({ resolution: LOOP_RESOLUTION_MS });
    loopDelay.enable();
    started.push({ close: () => void loopDelay.disable() });
    const loopGauge = metrics.gauge('swarmboot_event_loop_delay_seconds', 'Event-loop delay since the previous scrape, by quantile (max = the longest stall).');
    metrics.onCollect(() => {
      for (const [q, v] of [
        ['0.5', loopDelay.percentile(50)],
        ['0.99', loopDelay.percentile(99)],
        ['max', loopDelay.max],
      ] as const) {
        // The histogram holds the sampling timer's whole interval; the delay is what exceeds it.
        loopGauge.set(Number.isFinite(v) ? Math.max(0, v / 1e6 - LOOP_RESOLUTION_MS) / 1000 : 0, { quantile: q });
      }
      loopDelay.reset();
    });
    const profiles = new ProfileStore(cfg.profilesDir, log);
    profiles.open();
    profiles.watch();
    started.push({ close: () => profiles.close() });
    // Say at start (and after each reload) which Flatcar releases the profiles need but the assets lack.
    const checkAssets = (set: ProfileSet) => {
      for (const need of unmetNeeds(cfg.assetsDir, set)) {
        const image = `${need.image.channel}/${need.image.version}/${need.image.arch}`;
        log.warn({ image, state: need.state, profiles: need.profiles, fix: need.fix }, `Flatcar ${image} is ${need.state}`);
      }
    };
    checkAssets(profiles.current());
    profiles.on('change', checkAssets);

    const serverKey = loadServerKey(cfg.stateDir);
    const machines = await MachineStates.open(cfg.stateDir, { log });
    started.push(machines);

    const leases =
      cfg.dhcp.mode === 'full'
        ? await LeaseStore.open(cfg.stateDir, { log, fsync: cfg.dhcp.leaseSync === 'fsync' ? 'batch' : 'never', syncIntervalMs: cfg.dhcp.leaseSyncIntervalMs })
        : null;
    if (leases) started.push(leases);

    let httpPort = cfg.http.port;
    const boot = new BootService({
      profiles: () => profiles.current(),
      serverKey,
      serverUrlFallback: () => `http://${cfg.address}:${httpPort}`,
    });

    const macOfIp = (ip: string): Mac | null => {
      const lease = leases?.byIp(ip);
      if (lease?.mac && lease.state === 'bound') return lease.mac;
      const seen = machines.all().filter((m) => m.ip === ip).sort((a, b) => b.lastSeen - a.lastSeen)[0];
      return seen?.mac ?? null;
    };
    // In full mode we know who holds which address, so a machine's secret-bearing
    // config goes only to that address. In proxy mode the site's DHCP server knows; we cannot check.
    const secretGate =
      leases && cfg.http.secretsToLeasedIpOnly
        ? (mac: Mac, remoteIp: string): string | null => {
            const lease = leases.get(mac);
            const ip = remoteIp.replace(/^::ffff:/, '');
            if (!lease || lease.state !== 'bound' || lease.expiresAt <= leases.now()) return `${mac} holds no lease`;
            if (lease.ip !== ip) return `${mac} is leased ${lease.ip}, the request came from ${ip}`;
            return null;
          }
        : undefined;
    if (!secretGate) log.info({ mode: cfg.dhcp.mode }, 'Ignition/oem are served to any requester (no lease table to check against)');

    // Swarm rendezvous: election, tokens (0600 in the state dir), reconciler desired state.
    const swarm = Rendezvous.open({ store: new FileSwarmStore(cfg.stateDir, log), log });
    // Whole kernels and initrds in memory once a storm starts asking for them (server/http/asset-cache.ts).
    const assetCache = new AssetCache({ budgetBytes: cfg.http.assetCacheBytes, log: log.child({ subsystem: 'asset-cache' }) });
    started.push({ close: () => assetCache.clear() });
    const cacheCounters = {
      hits: metrics.counter('swarmboot_asset_cache_hits_total', 'Asset requests sent from memory.'),
      misses: metrics.counter('swarmboot_asset_cache_misses_total', 'Asset requests sent from disk (cache off, file too large, or still loading).'),
      evictions: metrics.counter('swarmboot_asset_cache_evictions_total', 'Files dropped from the asset cache to make room.'),
    };
    const cacheBytes = metrics.gauge('swarmboot_asset_cache_bytes', 'Bytes of asset files held in memory.');
    metrics.onCollect(() => {
      const st = assetCache.stats();
      cacheCounters.hits.setTotal(st.hits);
      cacheCounters.misses.setTotal(st.misses);
      cacheCounters.evictions.setTotal(st.evictions);
      cacheBytes.set(st.bytes);
    });
    const app = createHttpApp({
      boot,
      machines,
      metrics,
      log,
      assetsDir: cfg.assetsDir,
      assetCache,
      macOfIp,
      routers: [createSwarmRouter({ boot, swarm, machines, metrics, log, serverKey })],
      ...(secretGate ? { secretGate } : {}),
    });
    const http = await startHttpServer(app, { address: cfg.http.address, port: cfg.http.port });
    httpPort = http.port;
    started.push(http);

    let tftp: TftpServer | null = null;
    if (cfg.tftp.enabled) {
      // The TFTP server adds its own subsystem field.
      const tftpLog = log;
      const transfers = metrics.counter('swarmboot_tftp_transfers_total', 'TFTP transfers by result');
      const tftpBytes = metrics.counter('swarmboot_tftp_bytes_sent_total', 'TFTP file bytes acknowledged by clients');
      tftp = await createTftpServer({
        bind: { address: cfg.tftp.address, port: cfg.tftp.port },
        root: cfg.assetsDir,
        blksizeCap: cfg.tftp.blksizeCap,
        maxTransfers: cfg.tftp.maxTransfers,
        timeoutMs: cfg.tftp.timeoutMs,
        retries: cfg.tftp.retries,
        log: tftpLog,
        generated: async (path, remote) => {
          if (path === 'pxelinux.cfg/default') return Buffer.from(boot.pxelinuxDefault());
          const cfgMatch = /^pxelinux\.cfg\/01-([0-9a-f-]{17})$/i.exec(path);
          const oemMatch = /^oem\/([0-9a-f-]{17})\.cpio\.gz$/i.exec(path);
          const mac = parseMac(cfgMatch?.[1] ?? oemMatch?.[1] ?? '');
          if (mac === null || boot.context(mac) === null) return null;
          if (cfgMatch) return Buffer.from(boot.pxelinux(mac).body);
          const refused = secretGate?.(mac, remote.address);
          if (refused) {
            tftpLog.warn({ mac, remote: remote.address, reason: refused }, 'oem initrd refused');
            return null;
          }
          return boot.oem(mac).body;
        },
        onTransfer: (ev) => {
          transfers.inc({ result: ev.ok ? 'ok' : 'failed' });
          tftpBytes.inc({}, ev.bytes);
          const mac = macOfIp(ev.remote.address);
          if (mac && ev.ok) machines.record(mac, stepForFile(ev.path), { detail: `tftp:${ev.path}`, ip: ev.remote.address });
        },
      });
      started.push(tftp);
      // The TFTP server keeps its own counters; expose the ones an operator alerts on.
      const tftpCounters = {
        malformed: metrics.counter('swarmboot_tftp_malformed_total', 'TFTP packets that did not decode, dropped'),
        refused: metrics.counter('swarmboot_tftp_refused_total', 'TFTP requests answered with an error (not found, access violation, write)'),
        busy: metrics.counter('swarmboot_tftp_busy_total', 'TFTP requests refused because max_transfers were running'),
      };
      const tftpActive = metrics.gauge('swarmboot_tftp_active_transfers', 'TFTP transfers running now');
      const running = tftp;
      metrics.onCollect(() => {
        const st = running.stats();
        tftpCounters.malformed.setTotal(st.malformed);
        tftpCounters.refused.setTotal(st.refused);
        tftpCounters.busy.setTotal(st.busy);
        tftpActive.set(st.active);
      });
    }

    if (cfg.dhcp.mode !== 'off') {
      const sock67 = await bindUdp('0.0.0.0', 67, log);
      started.push({ close: () => new Promise<void>((r) => sock67.close(() => r())) });
      // Replies leave through a socket bound to our own address: Linux sends a limited broadcast out of the
      // interface that owns the source address, so offers cannot escape through another NIC's default route.
      const sendSock = await bindUdp(cfg.address, 67, log);
      started.push({ close: () => new Promise<void>((r) => sendSock.close(() => r())) });
      const sock4011 = cfg.dhcp.mode === 'proxy' ? await bindUdp('0.0.0.0', 4011, log) : undefined;
      if (sock4011) started.push({ close: () => new Promise<void>((r) => sock4011.close(() => r())) });
      const reservations = new Map<Mac, string>();
      const refreshReservations = () => {
        reservations.clear();
        for (const m of profiles.current().machines.values()) if (m.ip) reservations.set(m.mac, m.ip);
      };
      refreshReservations();
      const dhcp = new DhcpServer({
        mode: cfg.dhcp.mode,
        socket: sock67,
        sendSocket: sendSock,
        ...(sock4011 ? { socket4011: sock4011 } : {}),
        serverIp: cfg.address,
        pools: () => compilePools(cfg.dhcp.pools, { reservations, serverAddresses: [cfg.address] }),
        ...(leases ? { leases } : {}),
        boot,
        hasAsset: (name: string) => existsSync(join(cfg.assetsDir, name)),
        machines,
        metrics,
        log,
        replyDelayMs: cfg.dhcp.replyDelayMs,
      });
      profiles.on('change', refreshReservations);
      started.push(dhcp);
    }

    log.info(
      { interface: cfg.interface, address: cfg.address, http: httpPort, tftp: tftp?.address().port ?? null, dhcp: cfg.dhcp.mode, serverUrl: boot.serverUrl() },
      'swarmboot serving',
    );
    return {
      httpPort,
      tftpPort: tftp?.address().port ?? null,
      boot,
      profiles,
      metrics,
      reload: () => void profiles.reload(),
      close: closeAll,
    };
  } catch (err) {
    await closeAll();
    throw err;
  }
}
