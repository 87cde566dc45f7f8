module github.com/chorus-sh/chorus

go 1.26.8
