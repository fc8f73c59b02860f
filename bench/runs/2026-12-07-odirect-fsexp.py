# Run with FSEXP_DIR on the disk under test (the output beside it: /work on this VM).
# Does writing uploads with O_DIRECT keep a small concurrent fsync (an
# enrollment's WAL commit) from waiting behind the uploads' data?
# mode: buffered (write, fsync at completion) | direct (O_DIRECT writes into
# fallocated files, fsync at completion) | directnf (O_DIRECT, no fallocate)
import os, sys, time, threading, statistics, mmap
mode = sys.argv[1]
d = os.environ.get("FSEXP_DIR", "/tmp/fsexp") + "/" + mode
os.makedirs(d, exist_ok=True)
for f in os.listdir(d): os.unlink(os.path.join(d, f))
N, SIZE, CH = 20, 20 << 20, 65536
buf = mmap.mmap(-1, CH); buf.write(os.urandom(CH))
flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
if mode.startswith("direct"): flags |= os.O_DIRECT
fds = []
for i in range(N):
    fd = os.open(os.path.join(d, f"{i}.part"), flags, 0o600)
    if mode == "direct": os.posix_fallocate(fd, 0, SIZE)
    fds.append(fd)
stop = False; lat = []
def prober():
    fd = os.open(os.path.join(d, "wal"), os.O_WRONLY | os.O_CREAT, 0o600); os.pwrite(fd, b"y" * (64*4096), 0); os.fsync(fd)
    i = 0
    while not stop:
        os.pwrite(fd, b"x" * 4096, (i % 64) * 4096)
        t = time.perf_counter(); os.fsync(fd); lat.append((time.perf_counter() - t) * 1e3)
        i += 1; time.sleep(0.002)
th = threading.Thread(target=prober); th.start()
time.sleep(0.3)
t1 = time.perf_counter()
for off in range(0, SIZE, CH):
    for fd in fds: os.pwrite(fd, buf, off)
t2 = time.perf_counter()
for fd in fds: os.fsync(fd)
t3 = time.perf_counter()
time.sleep(0.3)
stop = True; th.join()
lat.sort()
print(f"{mode}: writes {t2-t1:.2f}s ({N*SIZE/(t2-t1)/2**20:.0f} MiB/s), fsyncs {t3-t2:.2f}s; small fsync ms median {statistics.median(lat):.2f} p90 {lat[int(len(lat)*.9)]:.1f} p99 {lat[int(len(lat)*.99)]:.1f} max {lat[-1]:.1f} n={len(lat)}")
for f in os.listdir(d): os.unlink(os.path.join(d, f))
