/// The version of lockd and lockctl, as `--version` prints it and `hello` reports it.
public let lockdVersion = "0.1.0"
