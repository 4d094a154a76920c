FROM localhost:5000/busybox
COPY . /ctx/
