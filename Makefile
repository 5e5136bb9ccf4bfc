# A Debian package:                     make deb && sudo apt install ./lockd_*.deb
# Install lockd as a systemd service:   sudo make install && sudo systemctl enable --now lockd.socket
# Remove it again:                      sudo make uninstall
# DESTDIR stages the files elsewhere (packaging, tests); PREFIX moves binaries and unit files.
PREFIX ?= /usr/local
DESTDIR ?=
BINDIR := $(PREFIX)/bin
LIBDIR := $(PREFIX)/lib
LIBEXECDIR := $(PREFIX)/libexec
# Swift's backtracer for static binaries: a crash of lockd then logs a symbolicated backtrace.
BACKTRACER := $(shell dirname "$$(readlink -f "$$(command -v swift)")")/../libexec/swift/linux/swift-backtrace-static
UNITDIR := $(LIBDIR)/systemd/system
SYSUSERSDIR := $(LIBDIR)/sysusers.d
TMPFILESDIR := $(LIBDIR)/tmpfiles.d
CONFDIR := /etc/lockd
SHAREDIR := $(PREFIX)/share
MANDIR := $(SHAREDIR)/man
BASHCOMPDIR := $(SHAREDIR)/bash-completion/completions
ZSHCOMPDIR := $(SHAREDIR)/zsh/site-functions
FISHCOMPDIR := $(SHAREDIR)/fish/vendor_completions.d
DIST := .build/dist
# Post-install steps run only on a live systemd host, and never for a staged install.
LIVE := $(if $(DESTDIR),,$(wildcard /run/systemd/system))

.PHONY: all build install uninstall deb

all: build

build:
	scripts/build-release
	scripts/manpages $(DIST) .build/share

install: build
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSUSERSDIR) $(DESTDIR)$(TMPFILESDIR) $(DESTDIR)$(CONFDIR)
	install -m 0755 $(DIST)/lockd $(DIST)/lockctl $(DESTDIR)$(BINDIR)/
	install -d $(DESTDIR)$(LIBEXECDIR)/lockd
	# lockctl runs lockctl-full for what it does not read itself; lflock is lockctl-full at once.
	install -m 0755 $(DIST)/lockctl-full $(DESTDIR)$(LIBEXECDIR)/lockd/lockctl-full
	ln -sf $$(realpath -m --relative-to=$(BINDIR) $(LIBEXECDIR))/lockd/lockctl-full $(DESTDIR)$(BINDIR)/lflock
	install -m 0755 "$(BACKTRACER)" $(DESTDIR)$(LIBEXECDIR)/lockd/swift-backtrace
	sed -e 's|/usr/local/bin/|$(BINDIR)/|g' -e 's|/usr/local/libexec/|$(LIBEXECDIR)/|g' systemd/lockd.service \
		> $(DESTDIR)$(UNITDIR)/lockd.service
	install -m 0644 systemd/lockd.socket $(DESTDIR)$(UNITDIR)/lockd.socket
	install -m 0644 systemd/lockd.sysusers $(DESTDIR)$(SYSUSERSDIR)/lockd.conf
	install -m 0644 systemd/lockd.tmpfiles $(DESTDIR)$(TMPFILESDIR)/lockd.conf
	install -d $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8
	install -m 0644 .build/share/man/man1/lockctl.1 .build/share/man/man1/lflock.1 $(DESTDIR)$(MANDIR)/man1/
	install -m 0644 .build/share/man/man5/lockd.toml.5 $(DESTDIR)$(MANDIR)/man5/
	install -m 0644 .build/share/man/man8/lockd.8 $(DESTDIR)$(MANDIR)/man8/
	install -d $(DESTDIR)$(BASHCOMPDIR) $(DESTDIR)$(ZSHCOMPDIR) $(DESTDIR)$(FISHCOMPDIR)
	install -m 0644 .build/share/completions/lockctl.bash $(DESTDIR)$(BASHCOMPDIR)/lockctl
	install -m 0644 .build/share/completions/_lockctl $(DESTDIR)$(ZSHCOMPDIR)/_lockctl
	install -m 0644 .build/share/completions/lockctl.fish $(DESTDIR)$(FISHCOMPDIR)/lockctl.fish
	# An existing configuration is the administrator's: never overwrite it.
	test -e $(DESTDIR)$(CONFDIR)/lockd.toml || install -m 0644 config/lockd.toml $(DESTDIR)$(CONFDIR)/lockd.toml
ifneq ($(LIVE),)
	systemd-sysusers $(SYSUSERSDIR)/lockd.conf
	systemd-tmpfiles --create $(TMPFILESDIR)/lockd.conf
	systemctl daemon-reload
	@echo "installed; start it with: systemctl enable --now lockd.socket"
endif

# lockd_VERSION_ARCH.deb in the current directory (scripts/deb).
deb:
	scripts/deb .

uninstall:
ifneq ($(LIVE),)
	-systemctl disable --now lockd.socket lockd.service
endif
	rm -f $(DESTDIR)$(BINDIR)/lockd $(DESTDIR)$(BINDIR)/lockctl $(DESTDIR)$(BINDIR)/lflock
	rm -rf $(DESTDIR)$(LIBEXECDIR)/lockd
	rm -f $(DESTDIR)$(UNITDIR)/lockd.service $(DESTDIR)$(UNITDIR)/lockd.socket
	rm -f $(DESTDIR)$(SYSUSERSDIR)/lockd.conf $(DESTDIR)$(TMPFILESDIR)/lockd.conf
	rm -f $(DESTDIR)$(MANDIR)/man1/lockctl.1 $(DESTDIR)$(MANDIR)/man1/lflock.1
	rm -f $(DESTDIR)$(MANDIR)/man5/lockd.toml.5 $(DESTDIR)$(MANDIR)/man8/lockd.8
	rm -f $(DESTDIR)$(BASHCOMPDIR)/lockctl $(DESTDIR)$(ZSHCOMPDIR)/_lockctl $(DESTDIR)$(FISHCOMPDIR)/lockctl.fish
ifneq ($(LIVE),)
	systemctl daemon-reload
endif
	@echo "kept $(CONFDIR)/lockd.toml and the user lockd; remove them with: rm -r $(CONFDIR); userdel lockd"
