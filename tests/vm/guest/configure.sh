# docs/install-debian.md from the chroot socket of step 2 to step 6, as written (spamd keeps
# its default 127.0.0.1:783: the guest is a host of its own). Runs after install-*.sh.
set -eux

install -D -m 0644 \
  /usr/share/doc/milter-manager/examples/milter-manager.socket.d/postfix-chroot.conf \
  /etc/systemd/system/milter-manager.socket.d/postfix-chroot.conf
systemctl daemon-reload
# the package started the socket on /run/milter-manager already: restart it on the new path
systemctl restart milter-manager.socket

# --- 3. spamass-milter (spamd keeps its default 127.0.0.1:783: the guest is a real host)
cat >> /etc/spamassassin/local.cf <<'EOF'
skip_rbl_checks 1
dns_available no
EOF
sed -i 's|^OPTIONS=.*|OPTIONS="-u spamass-milter -m -r 15"|' /etc/default/spamass-milter
systemctl enable --now spamd
systemctl restart spamass-milter

# --- 4. clamav-milter
sed -i -e 's/^OnInfected .*/OnInfected Reject/' -e 's/^AddHeader .*/AddHeader Replace/' \
    /etc/clamav/clamav-milter.conf
grep -qx 'OnInfected Reject' /etc/clamav/clamav-milter.conf || echo 'OnInfected Reject' >> /etc/clamav/clamav-milter.conf
grep -qx 'AddHeader Replace' /etc/clamav/clamav-milter.conf || echo 'AddHeader Replace' >> /etc/clamav/clamav-milter.conf
EICAR='X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*'
printf 'Test.EICAR:0:*:%s\n' "$(printf '%s' "$EICAR" | od -An -tx1 | tr -d ' \n')" \
    > /var/lib/clamav/local.ndb
mkdir -p /etc/systemd/system/clamav-daemon.service.d
printf '[Unit]\nConditionPathExistsGlob=\n' \
    > /etc/systemd/system/clamav-daemon.service.d/local-signatures.conf
systemctl daemon-reload
systemctl enable --now clamav-daemon
systemctl restart clamav-milter

# --- 5. opendkim
opendkim-genkey -D /etc/dkimkeys -d example.com -s mail
chown opendkim:opendkim /etc/dkimkeys/mail.private
cat >> /etc/opendkim.conf <<'EOF'
Domain example.com
Selector mail
KeyFile /etc/dkimkeys/mail.private
InternalHosts 127.0.0.1,203.0.113.0/24
EOF
systemctl restart opendkim

# --- 6. Postfix, plus what tests/system/guide_setup.py adds (compatibility level: the empty
# main.cf of a "No configuration" install has none, and smtpd refuses to start without relay
# restrictions; one virtual mailbox; XCLIENT from loopback)
touch /etc/postfix/main.cf
postconf -e 'myhostname = mail.example.com' 'mydestination = $myhostname, localhost' \
    'milter_protocol = 6' \
    'milter_default_action = accept' \
    'milter_mail_macros = {auth_author} {auth_type} {auth_authen}' \
    'smtpd_milters = unix:/milter-manager/milter-manager.sock' \
    'non_smtpd_milters = unix:/milter-manager/milter-manager.sock'
useradd --system --home-dir /var/mail/vhosts --shell /usr/sbin/nologin vmail
install -d -o vmail -g vmail /var/mail/vhosts
postconf -e 'compatibility_level = 3.6' 'mydomain = example.com' 'myorigin = $mydomain' \
    'mynetworks = 127.0.0.0/8' 'inet_interfaces = 127.0.0.1' 'inet_protocols = ipv4' \
    'smtpd_authorized_xclient_hosts = 127.0.0.1' \
    'virtual_mailbox_domains = example.org' 'virtual_mailbox_base = /var/mail/vhosts' \
    'virtual_mailbox_maps = static:inbox/' \
    "virtual_uid_maps = static:$(id -u vmail)" "virtual_gid_maps = static:$(id -g vmail)"
# Debian's postfix-instance-generator adds postfix@-.service only when main.cf exists at the
# last daemon-reload: after a "No configuration" install that is the touch above.
systemctl daemon-reload
systemctl enable --now postfix
set +x
