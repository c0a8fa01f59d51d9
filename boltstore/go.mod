module github.com/tgsession/session/boltstore

go 1.23

require github.com/tgsession/session v0.0.0-00010101000000-000000000000

require (
	github.com/stretchr/testify v1.12.1 // indirect
	go.etcd.io/bbolt v1.4.3 // indirect
	golang.org/x/sys v0.29.0 // indirect
)

replace github.com/tgsession/session => ../
