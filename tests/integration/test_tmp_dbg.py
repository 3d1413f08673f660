from tests.integration.test_mmd_real_milters import real_mmd  # noqa
def test_dbg(real_mmd, postfix):
    postfix.set_milters(real_mmd.spec)
    sent = postfix.send(sender="alice@example.com", headers={"Subject": "through mmd"})
    postfix.wait_for_mail(sent.queue_id)
    import subprocess
    print(subprocess.run(f"grep -h -A1 -e X-Virus -e DKIM -e X-Spam-Level -e Subject {postfix.maildir}/inbox/new/*", shell=True, capture_output=True, text=True).stdout)
    assert 0
