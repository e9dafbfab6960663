"""
A real OpenID Connect provider for the lab: Debian's LemonLDAP::NG on a lab host of its own,
served by nginx over HTTPS with a certificate from a throwaway lab CA.

    provider = Provider(lab, lab.hosts["idp"], workdir)   # makes its CA: provider.ca
    provider.install(client_id="jupyter", client_secret=..., redirect_uris=[...], logout_uris=[...])
    # deploy with oidc_issuer=provider.issuer, oidc_ca_bundle=provider.ca
    provider.resolve_on(jupyter_host)   # the Jupyter host finds PROVIDER_NAME

Its users are LemonLDAP::NG's demo accounts (password = login), which stand in for people:
``PEOPLE`` maps the tests' names to them. Their groups come from the same demo backend.
"""

from __future__ import annotations

import json
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

PROVIDER_NAME = "auth.lab.test"
# The portal's and common library's recommends it needs here: the OIDC issuer, the captcha
# it always loads, HTTPS from the portal. (Not all of them: no LDAP, mail or WebAuthn.)
PACKAGES = (
    "lemonldap-ng",
    "lemonldap-ng-fastcgi-server",
    "nginx",
    "libstring-random-perl",
    "libgd-securityimage-perl",
    "libimage-magick-perl",
    "libcrypt-openssl-bignum-perl",
    "libio-string-perl",
    "liblwp-protocol-https-perl",
    "libcookie-baker-xs-perl",
    "libapache-session-browseable-perl",
    "libhttp-parser-xs-perl",
    "libconvert-base32-perl",
    "libunicode-string-perl",
    "libmime-tools-perl",
    "libemail-sender-perl",
)
CONF = "/var/lib/lemonldap-ng/conf/lmConf-1.json"
SITE = "/etc/nginx/sites-enabled/lemonldap-portal"
CERT, KEY = "/etc/ssl/certs/lab-idp.crt", "/etc/ssl/private/lab-idp.key"
RELYING_PARTY = "jupyter"


@dataclass(frozen=True)
class Person:
    login: str
    password: str
    email: str
    name: str


# The demo backend's accounts; groups: timelords = dwho; earthlings = msmith, rtyler.
PEOPLE = {
    "alice": Person("dwho", "dwho", "dwho@badwolf.org", "Doctor Who"),
    "bob": Person("rtyler", "rtyler", "rtyler@badwolf.org", "Rose Tyler"),
    "carol": Person("msmith", "msmith", "msmith@badwolf.org", "Mickey Smith"),
}


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_ca_and_certificate(directory: Path) -> tuple[Path, Path, Path]:
    """A CA, and a certificate for PROVIDER_NAME signed by it: (ca.pem, cert.pem, key.pem)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca, key, csr, cert = (directory / n for n in ("ca.key", "ca.pem", "idp.key", "idp.csr", "idp.pem"))
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        str(ca_key),
        "-out",
        str(ca),
        "-days",
        "2",
        "-subj",
        "/CN=jupyter-deploy lab CA (TEST ONLY)",
    )
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={PROVIDER_NAME}"
    )
    extensions = directory / "san.cnf"
    extensions.write_text(f"subjectAltName=DNS:{PROVIDER_NAME}\nextendedKeyUsage=serverAuth\n")
    _openssl(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(ca),
        "-CAkey",
        str(ca_key),
        "-CAcreateserial",
        "-out",
        str(cert),
        "-days",
        "2",
        "-extfile",
        str(extensions),
    )
    return ca, cert, key


def signing_key(directory: Path) -> tuple[str, str]:
    """The provider's token-signing key pair (PEM private, PEM public)."""
    private, public = directory / "sig.key", directory / "sig.pub"
    _openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(private))
    _openssl("pkey", "-in", str(private), "-pubout", "-out", str(public))
    return private.read_text(), public.read_text()


NGINX_SITE = f"""
upstream llng_portal_upstream {{
    server unix:/var/run/llng-fastcgi-server/llng-fastcgi.sock;
}}
server {{
    listen 443 ssl;
    server_name {PROVIDER_NAME};
    ssl_certificate {CERT};
    ssl_certificate_key {KEY};
    root /usr/share/lemonldap-ng/portal/htdocs/;
    if ($uri !~ ^/((static|javascript|favicon).*|.*\\.psgi)) {{
        rewrite ^/(.*)$ /index.psgi/$1 break;
    }}
    location ~ ^(?<sc>/.*\\.psgi)(?:$|/) {{
        include /etc/nginx/fastcgi_params;
        fastcgi_pass llng_portal_upstream;
        fastcgi_param HTTP_HOST $host;
        fastcgi_param HTTPS on;
        fastcgi_param LLTYPE psgi;
        fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;
        fastcgi_split_path_info ^(.*\\.psgi)(/.*)$;
        fastcgi_param PATH_INFO $fastcgi_path_info;
    }}
    location /static/ {{ alias /usr/share/lemonldap-ng/portal/htdocs/static/; }}
    location /javascript/ {{ alias /usr/share/javascript/; }}
}}
"""


class Provider:
    def __init__(self, lab, host, workdir: Path):
        self.lab, self.host, self.dir = lab, host, workdir
        self.issuer = f"https://{PROVIDER_NAME}"
        self.ca, self.cert, self.key = make_ca_and_certificate(workdir)

    def ssh(self, command: str, timeout: float = 300):
        return self.lab.ssh(self.host, command, timeout=timeout)

    def upload(self, text: str, path: str, mode: str = "644") -> None:
        subprocess.run(
            ["ssh", *self._ssh_args(), f"root@{self.host.ip}", f"install -m {mode} /dev/stdin {shlex.quote(path)}"],
            input=text,
            text=True,
            check=True,
            capture_output=True,
        )

    def _ssh_args(self):
        from .hosts import ssh_args

        return ssh_args(self.lab.key, self.lab.known_hosts)

    def install(self, client_id: str, client_secret: str, redirect_uris: list[str], logout_uris: list[str]) -> None:
        """LemonLDAP::NG, nginx with TLS, and one relying party: the Jupyter host."""
        self.ssh(
            "apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "
            f"--no-install-recommends {' '.join(PACKAGES)} >/dev/null",
            timeout=600,
        )
        self.upload(self.cert.read_text(), CERT)
        self.upload(self.key.read_text(), KEY, mode="600")
        self.upload(NGINX_SITE, SITE)
        conf = json.loads(self.ssh(f"cat {CONF}").stdout)
        private, public = signing_key(self.dir)
        conf.update(
            {
                "domain": "lab.test",
                "portal": f"https://{PROVIDER_NAME}/",
                "securedCookie": 1,
                # Its captcha needs GD and ImageMagick modules the lab does not install.
                "captcha_login_enabled": 0,
                "captcha_mail_enabled": 0,
                "captcha_register_enabled": 0,
                "issuerDBOpenIDConnectActivation": 1,
                "oidcServiceMetaDataIssuer": self.issuer,
                "oidcServicePrivateKeySig": private,
                "oidcServicePublicKeySig": public,
                "oidcServiceKeyIdSig": "lab-1",
                "oidcRPMetaDataOptions": {
                    RELYING_PARTY: {
                        "oidcRPMetaDataOptionsClientID": client_id,
                        "oidcRPMetaDataOptionsClientSecret": client_secret,
                        "oidcRPMetaDataOptionsRedirectUris": " ".join(redirect_uris),
                        "oidcRPMetaDataOptionsPostLogoutRedirectUris": " ".join(logout_uris),
                        "oidcRPMetaDataOptionsIDTokenSignAlg": "RS256",
                        "oidcRPMetaDataOptionsBypassConsent": 1,
                        "oidcRPMetaDataOptionsPublic": 0,
                    }
                },
                "oidcRPMetaDataExportedVars": {
                    RELYING_PARTY: {
                        "email": "mail",
                        "name": "cn",
                        "preferred_username": "uid",
                        "groups": "groups;string;always",
                    }
                },
                "oidcRPMetaDataMacros": {RELYING_PARTY: {}},
                "oidcRPMetaDataOptionsExtraClaims": {RELYING_PARTY: {}},
            }
        )
        conf["cfgNum"] = 1
        self.upload(json.dumps(conf, indent=2), CONF, mode="640")
        self.ssh(
            f"chown www-data:www-data {CONF} && rm -f /etc/nginx/sites-enabled/default && "
            "rm -rf /var/lib/lemonldap-ng/cache/* && systemctl restart lemonldap-ng-fastcgi-server nginx"
        )

    def resolve_on(self, host) -> None:
        """``host`` finds PROVIDER_NAME at the provider's address (the lab has no DNS)."""
        line = f"{self.host.ip} {PROVIDER_NAME}"
        self.lab.ssh(host, f"grep -qxF {shlex.quote(line)} /etc/hosts || echo {shlex.quote(line)} >> /etc/hosts")
