/**
 * What swarmboot itself puts on every blade besides the profile's own files:
 * the swarm unit, the reconcile service and timer (managers in automatic
 * mode), the environment file that is the contract between the renderer
 * and ignition/swarm.sh, and the paths they live at. Pure: text in, text
 * out.
 */
import { ConfigError } from '../server/errors.js';
import type { RenderContext } from '../server/profiles/types.js';
import { IGNITION_OWN } from '../server/boot/layout.js';

// The paths swarmboot writes are defined once in layout.ts, where the profile loader also reads them.
export const SWARM_UNIT_NAME = IGNITION_OWN.swarmUnit;
export const RECONCILE_SERVICE_NAME = IGNITION_OWN.reconcileService;
export const RECONCILE_TIMER_NAME = IGNITION_OWN.reconcileTimer;
export const SWARM_SCRIPT_PATH = IGNITION_OWN.swarmScript;
export const SWARM_ENV_PATH = IGNITION_OWN.swarmEnv;
export const HOSTNAME_PATH = IGNITION_OWN.hostname;

/**
 * Since Flatcar 3761 docker.service is only socket-activated and
 * `enabled: true` no longer starts it at boot; the wants link does.
 */
export const DOCKER_WANTS_LINK = IGNITION_OWN.dockerWantsLink;
export const DOCKER_UNIT_PATH = '/usr/lib/systemd/system/docker.service';

/** Bounds shared by the unit and the script, so their timeouts agree. */
export const SWARM_START_TIMEOUT_SEC = 15 * 60;
export const SWARM_STOP_TIMEOUT_SEC = 120;
export const SWARM_RESTART_SEC = 30;
/** swarm.sh exit codes that retrying cannot fix: 1 = refused by the server (403/404), 2 = bad usage/config. */
export const SWARM_PERMANENT_EXIT_CODES = [1, 2] as const;

/**
 * The swarm unit. The ordering is the point: the 2017 seed's leave unit had
 * only Before=shutdown.target, so at shutdown dockerd was stopped in
 * parallel and `docker swarm leave` found no daemon.
 */
export function swarmUnit(): string {
  return `# Written by swarmboot. Joins the Docker swarm at boot, leaves it at shutdown.
[Unit]
Description=swarmboot: join the Docker swarm at boot, leave it at shutdown
# Requires= also starts the socket-activated docker.service at boot.
Wants=network-online.target
Requires=docker.service
# systemd stops units in the reverse order of After=: ExecStop (the leave)
# therefore runs while dockerd and the network are still up.
After=docker.service network-online.target

[Service]
Type=oneshot
RemainAfterExit=yes
EnvironmentFile=${SWARM_ENV_PATH}
ExecStart=${SWARM_SCRIPT_PATH} join
ExecStop=${SWARM_SCRIPT_PATH} leave
# Automatic mode waits until the first manager has created the swarm.
TimeoutStartSec=${SWARM_START_TIMEOUT_SEC}
# Covers a manager's demote-then-leave, which the script bounds to 60 s.
TimeoutStopSec=${SWARM_STOP_TIMEOUT_SEC}
# Transient failures (dockerd slow, no manager reachable) are retried;
# a refusal by the server (wrong secret, unknown machine) is not.
Restart=on-failure
RestartSec=${SWARM_RESTART_SEC}
RestartPreventExitStatus=${SWARM_PERMANENT_EXIT_CODES.join(' ')}

[Install]
WantedBy=multi-user.target
`;
}

/** How often the leader reconciles; the server treats three periods without a report as "no news". */
export const RECONCILE_INTERVAL_SEC = 30;
/** Bounds one run: desired state, a few docker calls per node, the reports (each bounded by curl's --max-time). */
export const RECONCILE_TIMEOUT_SEC = 300;

/**
 * The leader's reconciler: node labels from the profiles, stale (Down)
 * nodes removed, join tokens rotated on request. Every manager runs it;
 * swarm.sh exits at once unless this node is the swarm leader. Started by
 * its timer only, so it has no [Install] section.
 */
export function reconcileService(): string {
  return `# Written by swarmboot. Run by ${RECONCILE_TIMER_NAME}; acts only on the swarm leader.
[Unit]
Description=swarmboot: apply node labels, remove stale nodes, rotate join tokens (swarm leader only)
Requires=docker.service
# After the join: a manager that is still joining has nothing to reconcile.
After=docker.service ${SWARM_UNIT_NAME}

[Service]
Type=oneshot
EnvironmentFile=${SWARM_ENV_PATH}
ExecStart=${SWARM_SCRIPT_PATH} reconcile
TimeoutStartSec=${RECONCILE_TIMEOUT_SEC}
`;
}

export function reconcileTimer(): string {
  return `# Written by swarmboot. Starts ${RECONCILE_SERVICE_NAME} on every manager; only the leader acts.
[Unit]
Description=swarmboot: reconcile the swarm every ${RECONCILE_INTERVAL_SEC}s (leader only)

[Timer]
OnBootSec=1min
OnUnitActiveSec=${RECONCILE_INTERVAL_SEC}s
AccuracySec=5s
Unit=${RECONCILE_SERVICE_NAME}

[Install]
WantedBy=timers.target
`;
}

/** Whether this machine gets the reconcile service and timer: managers in automatic mode (static swarms are not swarmboot's to change). */
export function reconcileEnabled(ctx: RenderContext): boolean {
  return ctx.profile.role === 'manager' && ctx.cluster.swarm.mode === 'automatic';
}

/** Whether this machine gets the swarm script, env file and unit at all. */
export function swarmEnabled(ctx: RenderContext): boolean {
  return ctx.profile.role !== 'none' && ctx.cluster.swarm.mode !== 'off';
}

/**
 * systemd's EnvironmentFile parser treats quotes, backslashes and `#`
 * specially and swarm.sh splits SWARMBOOT_MANAGERS on commas; values are
 * therefore limited to the characters URLs, MACs, hostnames, addresses and
 * swarm tokens use, and anything else is refused rather than escaped.
 */
const ENV_VALUE = /^[A-Za-z0-9._:/@%+,=~[\]-]*$/;

function problem(ctx: RenderContext, message: string): ConfigError {
  const src = ctx.machine.source ?? ctx.profile.source;
  return new ConfigError(
    [{ file: src.file, line: src.line, col: 1, pointer: '', message }],
    `machine ${ctx.machine.mac} (${ctx.machine.hostname}, profile ${ctx.profile.name}): ${message}`,
  );
}

/** The variables of /etc/swarmboot/swarm.env, in file order. Throws when the swarm is off or the role is none. */
export function swarmEnvVars(ctx: RenderContext): Array<[string, string]> {
  const { swarm } = ctx.cluster;
  const role = ctx.profile.role;
  if (role === 'none' || swarm.mode === 'off') {
    throw problem(ctx, 'no swarm environment for a machine outside the swarm');
  }
  const vars: Array<[string, string]> = [
    ['SWARMBOOT_URL', ctx.serverUrl],
    ['SWARMBOOT_MAC', ctx.machine.mac],
    ['SWARMBOOT_SECRET', ctx.swarmSecret],
    ['SWARMBOOT_ROLE', role],
    ['SWARMBOOT_HOSTNAME', ctx.machine.hostname],
    ['SWARMBOOT_MODE', swarm.mode],
  ];
  if (swarm.mode === 'automatic') {
    vars.push(['SWARMBOOT_LEAVE_LAST_MANAGER', swarm.leaveLastManager ? '1' : '0']);
  } else {
    if (swarm.managers.length === 0) throw problem(ctx, 'swarm mode is static but swarm.managers is empty');
    const token = swarm.tokens[role];
    if (token === undefined || token === '') {
      throw problem(ctx, `swarm mode is static but the cluster has no ${role} token (swarm.tokens.${role}); a ${role} cannot join without it`);
    }
    vars.push(['SWARMBOOT_MANAGERS', swarm.managers.join(',')]);
    vars.push(['SWARMBOOT_TOKEN', token]);
  }
  for (const [name, value] of vars) {
    if (value === '' || !ENV_VALUE.test(value)) {
      throw problem(ctx, `${name} would be ${JSON.stringify(name === 'SWARMBOOT_SECRET' || name === 'SWARMBOOT_TOKEN' ? '<secret>' : value)}: empty or holding characters the environment file cannot carry`);
    }
  }
  return vars;
}

export function swarmEnv(ctx: RenderContext): string {
  const lines = swarmEnvVars(ctx).map(([k, v]) => `${k}=${v}`);
  const readers = reconcileEnabled(ctx) ? `${SWARM_UNIT_NAME} and ${RECONCILE_SERVICE_NAME}` : SWARM_UNIT_NAME;
  return [`# Written by swarmboot; read by ${readers}. Holds this machine's swarm secret: mode 0600.`, ...lines, ''].join('\n');
}
