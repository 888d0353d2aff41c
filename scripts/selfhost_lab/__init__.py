"""The selfhost.dify lab: local systemd containers that behave as bare Debian servers.

Each lab host is a container booted with systemd as PID 1, reached only over SSH on a
port published on 127.0.0.1, exactly as a user reaches a real server. At creation the
script plays cloud-init once (user `admin`, the lab's SSH key, passwordless sudo);
everything after that is done by the collection through `site.yml`.

    python3 scripts/lab.py up [--layout single|three] [--debian 13|12] [--no-converge]
    python3 scripts/lab.py converge [ansible-playbook arguments...]
    python3 scripts/lab.py status [--json]
    python3 scripts/lab.py destroy [--all]      (every lab on this engine; --name NAME: one)

(`make lab`, `make lab-converge` and `make lab-destroy` run it with the project venv.)

Layouts:
    single  one host `node1` in every service group
    three   `edge1` (edge), `app1` (dify), `data1` (postgresql, redis, object_storage, logging)

Generated (git-ignored) files in the inventory directory (default inventories/lab):
    hosts.yml                       hosts, published ports, private addresses, groups
    group_vars/all/generated.yml    base_admin_users with the lab's public key
    .ssh/id_ed25519{,.pub}          the lab's key pair (`destroy` keeps it, `destroy --all` not)
    .ssh/known_hosts, .ssh/config   host keys of the lab hosts; `ssh -F .ssh/config node1`
    .credentials/                   secrets generated with the password lookup (0700; kept
                                    like the key pair)

Docker resources: network `selfhost-lab`, containers `selfhost-lab-<host>`, volumes
`selfhost-lab-<host>-docker` (mounted at /var/lib/docker for nested Docker), all labelled
`selfhost.lab=1`. `--name NAME` runs a second, independent lab (prefix
`selfhost-lab-NAME`, inventory given with `--inventory`), as the three-host tests do.

The package, by concern (standard library only; drives the docker CLI):
    common      running commands, files, waiting, the errors shown to the user
    resources   names, layouts and labels of a lab's Docker resources; its network
    hosts       the host containers: flags, boot, cloud-init, container quirks, facts
    ssh         the lab's key pair, its ssh config, logging in as a user does
    inventory   the generated inventory files and the converged marker
    artifacts   artifacts and images from the controller: seaweedfs, Dify's images,
                Compose v2 for Debian 12
    commands    up, converge, status, destroy
    cli         the command line (`scripts/lab.py` and `python3 -m selfhost_lab` run it)
"""
