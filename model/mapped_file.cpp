#include "model/mapped_file.h"

#include "core/check.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace llamarl {
namespace {

// Closes the descriptor on every path out of Open; the mapping stays valid after close.
struct FdCloser {
  int fd;
  ~FdCloser() {
    if (fd >= 0) close(fd);
  }
};

}  // namespace

std::shared_ptr<MappedFile> MappedFile::Open(const std::string& path) {
  FdCloser fd{open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  LLAMARL_CHECK(fd.fd >= 0, "cannot open '", path, "': ", std::strerror(errno),
                "; check that the path exists and is readable");
  struct stat st;
  LLAMARL_CHECK(fstat(fd.fd, &st) == 0, "cannot stat '", path, "': ", std::strerror(errno));
  LLAMARL_CHECK(S_ISREG(st.st_mode), "'", path, "' is not a regular file; expected a file to map",
                S_ISDIR(st.st_mode) ? " (it is a directory)" : "");
  std::shared_ptr<MappedFile> file(new MappedFile());
  file->path_ = path;
  file->size_ = static_cast<size_t>(st.st_size);
  if (file->size_ == 0) return file;  // mmap rejects length 0; nothing to map
  // MAP_NORESERVE: untouched pages are never charged against overcommit, so mapping a large
  // checkpoint costs nothing until (unless) a caller writes into it.
  void* addr = mmap(nullptr, file->size_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE, fd.fd, 0);
  LLAMARL_CHECK(addr != MAP_FAILED, "cannot map '", path, "' (", file->size_, " bytes): ", std::strerror(errno));
  file->data_ = static_cast<uint8_t*>(addr);
  return file;
}

void MappedFile::DropPages(size_t offset, size_t length) const {
  if (!data_ || length == 0 || offset >= size_) return;
  const size_t page = size_t(sysconf(_SC_PAGESIZE));
  const size_t begin = offset / page * page;
  const size_t end = std::min(size_, offset + length);
  madvise(data_ + begin, end - begin, MADV_DONTNEED);  // advice: a failure only leaves the pages resident
}

MappedFile::~MappedFile() {
  if (data_) munmap(data_, size_);
}

}  // namespace llamarl
