"""The control machine's environment variables the deploy reads secrets from (never host data)."""

PASSWORD_ENV = "JUPYTER_PASSWORD"
BASIC_AUTH_PASSWORD_ENV = "JUPYTER_BASIC_AUTH_PASSWORD"
BACKUP_PASSWORD_ENV = "JUPYTER_BACKUP_PASSWORD"
# An s3: repository's credentials.
S3_CREDENTIAL_ENVS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
# The OpenID Connect client secret (auth = 'oidc').
OIDC_CLIENT_SECRET_ENV = "JUPYTER_OIDC_CLIENT_SECRET"
