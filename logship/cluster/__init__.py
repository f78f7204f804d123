"""SSH-launched peers: `logship cluster up/status/down/trust` and the fence.

The one package that imports paramiko (ssh.py only). It starts, checks and stops brokers
on their hosts; it never carries data (replication goes over the brokers' Kafka listener).

    ssh.py               connections with strict host keys, commands with deadlines
    remote.py            the shell command lines run on the hosts, and their output
    connect.py           an SshHost for a cluster file's broker entry
    parallel.py          one thread per broker
    launch.py            cluster up (install.py: --install)
    peers.py             cluster status and down (replication_view.py: Metadata columns)
    trust.py             cluster trust
    fence.py             the fence marker of `cluster remove`
"""
