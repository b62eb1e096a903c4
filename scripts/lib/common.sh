# Shared by scripts/test and scripts/demo: find the Rust toolchain (sudo
# drops ~/.cargo/bin from PATH) and install Debian packages that are missing.

# The Debian packages the build, the test suite and the demo need. Keep
# every system dependency here: CI installs from this list on a fresh
# machine.
# - clang-19, llvm-19, libbpf-dev, linux-libc-dev: the XDP program (ebpf/build.rs)
# - libelf-dev, zlib1g-dev, pkg-config, m4, make: libxdp-sys's vendored libxdp (AF_XDP)
# - tshark, tcpdump: check what the data path writes
# - iproute2, iputils-ping, iperf3, ethtool: the network-namespace test rigs
#   (iperf3 also drives the overlay TCP comparison of xvr-e2e)
# - util-linux: taskset (pinning test hosts and generators)
# - nftables: the kernel NAT peer of the end-to-end benchmark (xvr-e2e)
# - openvswitch-switch: Open vSwitch's AF_XDP datapath, the other peer of
#   xvr-e2e (run in the rig's namespaces, its daemons never as a service)
# - python3, curl: the live demo's web servers and clients (scripts/demo)
# - systemd: systemd-analyze checks the unit in dist/ (tests/service.rs)
# - prometheus: promtool checks what --metrics serves (tests/metrics.rs)
# - udhcpc: the VMs' DHCP client (tests/live_dhcp.rs, scripts/demo)
# - dnsmasq-base, bind9-dnsutils, dnsperf: an upstream resolver, dig, and the
#   DNS load of xvr-e2e (tests/live_dns.rs, bench)
XVR_PACKAGES=(clang-19 llvm-19 libbpf-dev linux-libc-dev libelf-dev zlib1g-dev pkg-config m4 make tshark tcpdump iproute2 iputils-ping iperf3 ethtool util-linux nftables openvswitch-switch python3 curl systemd prometheus udhcpc dnsmasq-base bind9-dnsutils dnsperf)

find_cargo() {
    if ! command -v cargo >/dev/null 2>&1; then
        for home in "${CARGO_HOME:-}" "$HOME/.cargo" "/root/.cargo" ${SUDO_USER:+"$(getent passwd "$SUDO_USER" | cut -d: -f6)/.cargo"}; do
            if [ -n "$home" ] && [ -x "$home/bin/cargo" ]; then
                export PATH="$home/bin:$PATH"
                break
            fi
        done
    fi
    if ! command -v cargo >/dev/null 2>&1; then
        echo "error: cargo not found; xvr needs Rust >= 1.85 (install it with rustup)" >&2
        exit 1
    fi
}

ensure_packages() {
    local missing=()
    for pkg in "$@"; do
        if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
            missing+=("$pkg")
        fi
    done
    if [ ${#missing[@]} -eq 0 ]; then
        return
    fi
    if [ "$(id -u)" -ne 0 ]; then
        echo "error: missing packages ${missing[*]}; run as root (sudo) to install them" >&2
        exit 1
    fi
    echo "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Packages such as prometheus would start their daemons on the host:
    # tell invoke-rc.d not to (policy-rc.d, as container images do), unless
    # the host has its own policy already.
    local policy=/usr/sbin/policy-rc.d ours=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && ours=1
    fi
    apt-get update -qq
    local status=0
    apt-get install -y -qq "${missing[@]}" >/dev/null || status=$?
    if [ "$ours" -eq 1 ]; then
        rm -f "$policy"
    fi
    return "$status"
}
