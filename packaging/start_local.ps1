# Starts RustDB on Windows through Docker Desktop: there is no native Windows build yet (it will
# need WinFsp in place of FUSE), so this runs the Linux container of packaging/Dockerfile.
#
#   powershell -ExecutionPolicy Bypass -File packaging\start_local.ps1
#
# The API answers on http://127.0.0.1:8080 (key from RUSTDB_API_KEYS, "devkey" by default) and
# the mount is at /mnt/rustdb inside the container: Docker Desktop cannot share a FUSE mount back
# to Windows, so reach the files with `docker exec -it rustdb bash`, or copy them in and out with
# `docker cp`. Settings come from a .env file at the top of the checkout (see .env.example).
# Stop with `docker stop rustdb` (it unmounts cleanly); the storage stays in the volume rustdb-data.

# Native commands report through exit codes, checked after each one. 'Stop' would turn anything
# docker writes to a redirected stderr into a terminating error in Windows PowerShell 5.1.
$ErrorActionPreference = 'Continue'
function Fail([string]$Message) {
    Write-Host "start_local: $Message" -ForegroundColor Red
    exit 1
}
$root = Split-Path -Parent $PSScriptRoot
Set-Location $root

if (-not (Get-Command docker -ErrorAction SilentlyContinue)) {
    Fail 'docker is missing: install Docker Desktop (WSL 2 back end) and start it'
}
docker info *> $null
if ($LASTEXITCODE -ne 0) {
    Fail 'Docker Desktop is not running: start it and try again'
}

# RUSTDB_* settings from .env, if there is one (KEY=value lines; # starts a comment).
$settings = @{ 'RUSTDB_API_KEYS' = 'devkey:default' }
if (Test-Path .env) {
    foreach ($line in Get-Content .env) {
        if ($line -match '^\s*(RUSTDB_[A-Z0-9_]+)\s*=\s*(.*?)\s*$') {
            $settings[$Matches[1]] = $Matches[2]
        }
    }
}
# Inside the container these three are fixed by the image.
foreach ($fixed in 'RUSTDB_STORAGE_DIR', 'RUSTDB_MOUNT_DIR', 'RUSTDB_LISTEN') {
    $settings.Remove($fixed)
}
$port = if ($env:RUSTDB_PORT) { $env:RUSTDB_PORT } else { '8080' }

docker build -f packaging/Dockerfile -t rustdb:latest .
if ($LASTEXITCODE -ne 0) { Fail 'docker build failed (output above)' }

# A container left from an earlier run goes; none there is not an error.
docker rm -f rustdb *> $null
$envArgs = foreach ($key in $settings.Keys) { '-e'; "$key=$($settings[$key])" }
docker run -d --name rustdb --init --device /dev/fuse --cap-add SYS_ADMIN `
    --security-opt apparmor=unconfined --stop-timeout 30 -p "127.0.0.1:${port}:8080" `
    -v rustdb-data:/data @envArgs rustdb:latest
if ($LASTEXITCODE -ne 0) { Fail 'docker run failed (output above)' }

Write-Host "start_local: RustDB is starting; API on http://127.0.0.1:$port, files at /mnt/rustdb in the container"
Write-Host 'start_local: docker logs -f rustdb follows it; docker stop rustdb stops it'
