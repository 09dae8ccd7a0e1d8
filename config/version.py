"""The product's version, which each host's firewall worker reports (FirewallHost.version) so the
Hosts page can show a fleet running mixed releases. Raised with each release."""

VERSION = "0.13.0"
