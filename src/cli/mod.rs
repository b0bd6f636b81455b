//! `kubectl datajob`: see docs/cli.md.
