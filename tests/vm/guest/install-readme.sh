# docs/install-debian.md step 2 as a reader on an SELinux host runs it,
# with mmd installed as the README says (`make install DESTDIR= PREFIX=/usr`).
# Sourced by guest.sh inside the guest, as root, with SELinux enforcing. $PAYLOAD is the
# unpacked payload. Step 1 (apt-get install of the mail packages) is done: they are in the
# image, which has no network.
set -eux

# --- 2. mmd. `make install DESTDIR= PREFIX=/usr` ran on the host into a staging folder
# (the guest has no PyPI for the wheels); its tree is unpacked here as it is.
tar -xf "$PAYLOAD/stage.tar" -C /
systemd-sysusers
systemd-tmpfiles --create /usr/lib/tmpfiles.d/milter-manager.conf
usermod -a -G opendkim,postfix,clamav milter-manager
systemctl daemon-reload

# --- docs/selinux.md, "Build and install" (paths that do not exist yet make restorecon
# exit 255: they are labelled when systemd or tmpfiles create them).
cd "$PAYLOAD/selinux"
make
semodule -i milter_manager.pp
restorecon -R -v /usr/sbin/milter-manager /etc/milter-manager /run/milter-manager \
    /var/spool/postfix/milter-manager /var/lib/milter-manager /var/cache/milter-manager \
    /usr/lib/systemd/system/milter-manager.service /usr/lib/systemd/system/milter-manager.socket \
    || [ $? = 255 ]
cd /
systemctl enable milter-manager.socket
