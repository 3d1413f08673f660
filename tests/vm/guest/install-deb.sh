# docs/install-debian.md step 2 with the Debian package (make deb on the host): apt installs it
# offline, its dependencies are in the image; the package's postinst creates the user, adds
# the socket groups and loads and applies the SELinux module (semodule -i, restorecon).
# Sourced by guest.sh inside the guest, as root, with SELinux enforcing; $PAYLOAD is the
# unpacked payload. Step 1 (apt-get install of the mail packages): they are in the image.
set -eux
apt-get install -y "$PAYLOAD"/milter-manager_*.deb
semodule -l | grep -x 'milter_manager.*'
