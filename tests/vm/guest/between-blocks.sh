# The guide's commands that are not in tagged blocks (tagged: run=install, run=chroot,
# run=clamav, run=opendkim, run=postfix, read from docs/install-debian.md by the test), as the
# guide writes them for a real host. tests/vm/test_selinux_enforcing.py cuts this file at the
# "# @@ NAME" lines and puts each piece where the guide has it.

# @@ spamassassin (step 3; spamd keeps its default 127.0.0.1:783: the guest is a host of its own)
cat >> /etc/spamassassin/local.cf <<'EOF2'
skip_rbl_checks 1
dns_available no
EOF2
sed -i 's|^OPTIONS=.*|OPTIONS="-u spamass-milter -m -r 15"|' /etc/default/spamass-milter
systemctl enable --now spamd
systemctl restart spamass-milter

# @@ clamav-start (step 4, "Then:")
systemctl daemon-reload
systemctl enable --now clamav-daemon
systemctl restart clamav-milter

# @@ opendkim-start (step 5)
systemctl restart opendkim

# @@ postfix-test (step 6: what the test sets before the guide's block, as in
# tests/system/guide_setup.py: one virtual mailbox, loopback only, XCLIENT; the compatibility
# level comes from the guide's own block)
touch /etc/postfix/main.cf
useradd --system --home-dir /var/mail/vhosts --shell /usr/sbin/nologin vmail
install -d -o vmail -g vmail /var/mail/vhosts
postconf -e 'mydomain = example.com' 'myorigin = $mydomain' \
    'mynetworks = 127.0.0.0/8' 'inet_interfaces = 127.0.0.1' 'inet_protocols = ipv4' \
    'smtpd_authorized_xclient_hosts = 127.0.0.1' \
    'virtual_mailbox_domains = example.org' 'virtual_mailbox_base = /var/mail/vhosts' \
    'virtual_mailbox_maps = static:inbox/' \
    "virtual_uid_maps = static:$(id -u vmail)" "virtual_gid_maps = static:$(id -g vmail)"
# Debian's postfix-instance-generator runs at daemon-reload; main.cf exists only now
systemctl daemon-reload
