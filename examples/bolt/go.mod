module github.com/tgsession/session/examples/bolt

go 1.23

require (
	github.com/go-telegram-bot-api/telegram-bot-api/v5 v5.5.1
	github.com/stretchr/testify v1.12.1
	github.com/tgsession/session v0.0.0-00010101000000-000000000000
	github.com/tgsession/session/boltstore v0.0.0-00010101000000-000000000000
	go.etcd.io/bbolt v1.4.3
)

require (
	go.yaml.in/yaml/v3 v3.0.5 // indirect
	golang.org/x/sys v0.29.0 // indirect
)

replace (
	github.com/tgsession/session => ../..
	github.com/tgsession/session/boltstore => ../../boltstore
)
