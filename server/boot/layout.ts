/**
 * Where things live, in one place: asset paths (relative to the assets dir,
 * which is also the TFTP root), and the HTTP endpoints blades are pointed at.
 * Renderers, the HTTP app and the TFTP server all ask here, so a URL in an
 * iPXE script and the route that serves it cannot drift apart.
 */
import type { FlatcarImage } from '../profiles/types.js';
import { macHyphen, type Mac } from '../mac.js';

export const FLATCAR_KERNEL = 'flatcar_production_pxe.vmlinuz';
export const FLATCAR_INITRD = 'flatcar_production_pxe_image.cpio.gz';
/** initrd name the per-machine Ignition initrd gets on the kernel line and in `initrd --name`. */
export const OEM_INITRD = 'oem.cpio.gz';
/** Path inside the oem initrd where Flatcar's PXE setup looks for an embedded config. */
export const OEM_CONFIG_PATH = 'usr/share/oem/config.ign';

/** Directory (relative to the assets root) holding one Flatcar release's PXE files. */
export function flatcarDir(img: FlatcarImage): string {
  return `flatcar/${img.channel}/${img.version}/${img.arch}`;
}

export function flatcarKernelPath(img: FlatcarImage): string {
  return `${flatcarDir(img)}/${FLATCAR_KERNEL}`;
}

export function flatcarInitrdPath(img: FlatcarImage): string {
  return `${flatcarDir(img)}/${FLATCAR_INITRD}`;
}

/** Generated (not on disk) TFTP paths. */
export function tftpOemPath(mac: Mac): string {
  return `oem/${macHyphen(mac)}.cpio.gz`;
}

export function pxelinuxConfigPath(mac: Mac): string {
  return `pxelinux.cfg/01-${macHyphen(mac)}`;
}

/** HTTP endpoints, relative to the server URL. */
export const endpoints = {
  bootScript: () => '/boot.ipxe',
  ipxe: (mac: Mac) => `/ipxe?mac=${macHyphen(mac)}`,
  ignition: (mac: Mac) => `/ignition?mac=${macHyphen(mac)}`,
  oem: (mac: Mac) => `/oem.cpio.gz?mac=${macHyphen(mac)}`,
  asset: (path: string) => `/assets/${path}`,
  /** Swarm rendezvous API (issue 4): the swarm script calls these. */
  swarm: '/api/swarm',
} as const;

/** Paths and units the Ignition renderer writes itself; profiles may not define them again (Ignition rejects duplicate paths). */
export const IGNITION_OWN = {
  hostname: '/etc/hostname',
  swarmScript: '/opt/swarmboot/swarm.sh',
  swarmEnv: '/etc/swarmboot/swarm.env',
  dockerWantsLink: '/etc/systemd/system/multi-user.target.wants/docker.service',
  swarmUnit: 'swarmboot-swarm.service',
  reconcileService: 'swarmboot-reconcile.service',
  reconcileTimer: 'swarmboot-reconcile.timer',
} as const;
