# image/lib.sh — shared by image/build and image/test (sourced, not run).
#
#   make_root ROOTDIR OUTDIR FS EPOCH   ROOTDIR → OUTDIR/root.img (squashfs or
#                                       erofs), OUTDIR/root.verity (dm-verity
#                                       hash tree), OUTDIR/roothash
#   entry_options TEMPLATE ROOTHASH DATA_PARTUUID HASH_PARTUUID SLOT
#                                       a boot entry's kernel command line
#   make_bundle OUTDIR BOOTDIR VERSION KEY CERT BUNDLE
#                                       a signed RAUC bundle (verity format)
#                                       of OUTDIR's root slot and BOOTDIR's
#                                       kernel, initrd and command line
#   signing_key DIR                     DIR/signing.{key,cert}.pem, made once
#   require_free DIR MIB WHAT           fails, saying so, unless DIR's file
#                                       system has MIB MiB free for WHAT

# shellcheck shell=bash

IMAGE_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# A disk that fills up mid-way fails far from its cause (a truncated cache
# tarball, mksquashfs' write error): the scripts check before they start.
require_free() { # dir mib what
    local free
    free=$(df -B1M --output=avail "$1" | tail -n 1 | tr -d ' ')
    if ((free < $2)); then
        echo "image: $free MiB free on the disk holding $1; $3 needs about $2 MiB: free some space (e.g. cargo clean, or remove image/.cache) and run again" >&2
        return 1
    fi
}

# What bundles are built for and what RAUC on the appliance accepts.
COMPATIBLE=hashwatt-x86_64

make_root() { # rootdir outdir fs epoch
    local root=$1 out=$2 fs=$3 epoch=$4
    rm -f "$out/root.img" "$out/root.verity" "$out/roothash"
    if [[ $fs == erofs ]]; then
        mkfs.erofs -zlz4hc,12 -T"$epoch" "$out/root.img" "$root" >"$out/mkfs.log" 2>&1 \
            || { cat "$out/mkfs.log" >&2; return 1; }
    else
        mksquashfs "$root" "$out/root.img" -comp xz -Xbcj x86 -b 1M -noappend -quiet \
            -mkfs-time "$epoch" -all-time "$epoch" >"$out/mkfs.log" 2>&1 \
            || { cat "$out/mkfs.log" >&2; return 1; }
    fi
    # Pad to the 4 KiB verity block.
    truncate -s %4096 "$out/root.img"
    veritysetup format "$out/root.img" "$out/root.verity" >"$out/verity.txt"
    local h
    h=$(awk '/^Root hash:/ {print $3}' "$out/verity.txt")
    [[ $h =~ ^[0-9a-f]{64}$ ]] || { cat "$out/verity.txt" >&2; return 1; }
    echo "$h" >"$out/roothash"
}

entry_options() { # template roothash data-partuuid hash-partuuid slot
    sed -e "s/@ROOTHASH@/$2/g" -e "s/@DATA@/$3/g" -e "s/@HASH@/$4/g" -e "s/@SLOT@/$5/g" "$1"
}

signing_key() { # dir
    local d=$1
    [[ -s $d/signing.key.pem && -s $d/signing.cert.pem ]] && return 0
    mkdir -p "$d"
    chmod 0700 "$d"
    echo "image: making a new update signing key in $d (keep it: appliances accept only bundles signed with it)" >&2
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout "$d/signing.key.pem" -out "$d/signing.cert.pem" -days 3650 \
        -subj "/O=hashwatt/CN=hashwatt update signing $(hostname)-$(date -u +%Y%m%d)" 2>/dev/null
    chmod 0600 "$d/signing.key.pem"
}

make_bundle() { # outdir bootdir version key cert bundle
    local out=$1 boot=$2 version=$3 key=$4 cert=$5 bundle=$6
    local c=$out/bundle
    rm -rf "$c" && mkdir -p "$c/boot"
    ln "$out/root.img" "$c/root.img" 2>/dev/null || cp "$out/root.img" "$c/root.img"
    # RAUC picks the handler by file name: raw slots take *.img.
    ln "$out/root.verity" "$c/root-verity.img" 2>/dev/null || cp "$out/root.verity" "$c/root-verity.img"
    cp "$boot/vmlinuz" "$boot/initrd" "$boot/cmdline" "$c/boot/"
    cp "$out/roothash" "$c/boot/roothash"
    install -m 0755 "$IMAGE_LIB_DIR/bundle-hook" "$c/hook"
    # The hash tree is written first: when the root slot's post-install
    # hook makes the boot entry, both halves of the slot are in place.
    cat >"$c/manifest.raucm" <<EOF
[update]
compatible=$COMPATIBLE
version=$version
description=hashwatt appliance root file system

[bundle]
format=verity

[hooks]
filename=hook

[image.verity]
filename=root-verity.img

[image.rootfs]
filename=root.img
hooks=post-install
EOF
    rm -f "$bundle"
    rauc bundle --cert "$cert" --key "$key" "$c" "$bundle" >"$out/bundle.log" 2>&1 \
        || { cat "$out/bundle.log" >&2; return 1; }
    rm -rf "$c"
}
