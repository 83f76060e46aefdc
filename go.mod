module github.com/portico-edge/portico

go 1.26.8

require go.yaml.in/yaml/v3 v3.0.6

require github.com/coder/websocket v1.8.15
