/**
 * Ambient types for the parts of the untyped `dhcp` npm package (v0.2.x,
 * CommonJS, no "exports" map) that swarmboot touches: its option table and,
 * in tests only, its own parser. The package's Server/Client are not used.
 */

declare module 'dhcp/lib/options.js' {
  namespace dhcpOptions {
    /** How the package's SeqBuffer reads and writes an option's value. */
    type OptionType =
      | 'IP'
      | 'IPs'
      | 'Int8'
      | 'UInt8'
      | 'Int16'
      | 'UInt16'
      | 'Int32'
      | 'UInt32'
      | 'ASCII'
      | 'UTF8'
      | 'Bool'
      | 'UInt8s'
      | 'UInt16s';

    interface OptionSpec {
      name: string;
      /** Absent on the package's pseudo-options (1001 "Static"). */
      type?: OptionType;
      config?: string;
      attr?: string;
      default?: unknown;
      enum?: Record<number, string>;
    }
  }

  const dhcpOptions: {
    /** Code -> spec; shared, mutable, module-level (addOption writes here). */
    readonly opts: Record<number, dhcpOptions.OptionSpec | undefined>;
    readonly conf: Record<string, number | undefined>;
    readonly attr: Record<string, number | undefined>;
    addOption(code: number, spec: dhcpOptions.OptionSpec): void;
  };
  export = dhcpOptions;
}

declare module 'dhcp/lib/protocol.js' {
  namespace dhcpProtocol {
    interface ParsedPacket {
      op: number;
      htype: number;
      hlen: number;
      hops: number;
      xid: number;
      secs: number;
      flags: number;
      ciaddr: string;
      yiaddr: string;
      siaddr: string;
      giaddr: string;
      /** "AA-BB-CC-DD-EE-FF"; the parser throws for anything but htype 1 / hlen 6. */
      chaddr: string;
      sname: string;
      file: string;
      magicCookie: number;
      /** Code -> value decoded by the option's table type; unknown codes are dropped (and logged). */
      options: Record<number, unknown>;
    }
  }

  const dhcpProtocol: {
    /** Throws plain Errors/RangeErrors on bad input and console.error()s unknown options. */
    parse(buf: Buffer): dhcpProtocol.ParsedPacket;
  };
  export = dhcpProtocol;
}

declare module 'dhcp' {
  import type { OptionSpec } from 'dhcp/lib/options.js';

  const dhcp: {
    addOption(code: number, spec: OptionSpec): void;
    readonly DHCPDISCOVER: 1;
    readonly DHCPOFFER: 2;
    readonly DHCPREQUEST: 3;
    readonly DHCPDECLINE: 4;
    readonly DHCPACK: 5;
    readonly DHCPNAK: 6;
    readonly DHCPRELEASE: 7;
    readonly DHCPINFORM: 8;
  };
  export = dhcp;
}
