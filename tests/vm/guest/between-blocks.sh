# What the test adds to the guide's tagged blocks (read from docs/install-debian.md by the
# test), for the guest only. tests/vm/test_selinux_enforcing.py cuts this file at the
# "# @@ NAME" lines and puts each piece where the guide has it.

# @@ postfix-test (step 6: what the test sets before the guide's block, as in
# tests/support/guide_setup.py: one virtual mailbox, loopback only, XCLIENT; the compatibility
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
